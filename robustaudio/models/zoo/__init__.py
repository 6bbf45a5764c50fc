"""The thesis model zoo: the architectures of chapters 3, 4 and 6 behind the :class:`Classifier` interface.

Every entry of :data:`ZOO` is a Classifier class whose constructor takes ``labels`` (defaulting
to the thesis's class count) plus keyword config, so a zoo model saves and loads through the
registry's ``{"arch", "config", "state_dict"}`` checkpoints. Weights are random until trained or
loaded (CNN14 and AST load the published checkpoints' layouts directly).

========================  ==============================  =================================================
name                      thesis                          input
========================  ==============================  =================================================
m3 m5 m11 m18 m34-res     ch. 3, Table 3.1                8 kHz waveform, 4 s, 10 UrbanSound8K classes
crnn                      ch. 4 (TALNet), Table 6.2       16 kHz, 10 s, 64 x 401 log-mel, 527 classes
tal-trans                 §6.3 CNN+Transformer            as crnn
resnet50-att              §6.3 ResNet, Table 6.2          as crnn
conformer                 §6.3 Conformer, Table 6.2       as crnn
cnn14                     Table 6.1 PANNs CNN14           32 kHz, 10 s, 64 x 1001 log-mel (dB), 527 classes
ast-base                  Tables 6.1-6.3 AST, A1          16 kHz, 10 s, 128 x 1024 Kaldi fbank, 527 classes
ast-64x400                Tables 6.1-6.3 AST, A3/A4       16 kHz, 10 s, 64 x 400 log-mel, 527 classes
dscnn                     §6.9, Table 6.5 DSCNN           16 kHz, 1 s, 40 MFCC x 51 frames, 2 classes
========================  ==============================  =================================================
"""

from __future__ import annotations

from collections.abc import Callable

from ..base import Classifier
from .ast_full import AST64x400, AudioSpectrogramTransformer, load_published_ast
from .crnn import CRNN, TALTrans
from .dscnn import DSCNN
from .panns import Cnn14
from .pooling import MIL_POOLINGS, MILHead, probabilities_to_logits
from .resnet_conformer import ConformerAttention, ResNet50Attention
from .waveform_cnn import M3, M5, M11, M18, M34Res, WaveformCNN

ZOO: dict[str, Callable[..., Classifier]] = {
    "m3": M3,
    "m5": M5,
    "m11": M11,
    "m18": M18,
    "m34-res": M34Res,
    "crnn": CRNN,
    "tal-trans": TALTrans,
    "resnet50-att": ResNet50Attention,
    "conformer": ConformerAttention,
    "cnn14": Cnn14,
    "ast-base": AudioSpectrogramTransformer,
    "ast-64x400": AST64x400,
    "dscnn": DSCNN,
}

__all__ = ["ZOO", "M3", "M5", "M11", "M18", "M34Res", "WaveformCNN", "CRNN", "TALTrans", "ResNet50Attention",
           "ConformerAttention", "Cnn14", "AudioSpectrogramTransformer", "AST64x400", "DSCNN", "MILHead",
           "MIL_POOLINGS", "probabilities_to_logits", "load_published_ast"]
