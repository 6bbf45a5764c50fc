"""Defenses (mixup, adversarial training, randomized smoothing, diffusion purification).

None is implemented yet; see the project's open issues. A new defense goes in its own module here.
"""
