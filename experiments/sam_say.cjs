// SAM (Software Automatic Mouth) through the sam-js npm package: text -> float32 samples at 22,050 Hz.
// node experiments/sam_say.cjs LIBRARY TEXT SPEED PITCH THROAT MOUTH OUT.f32
const [library, text, speed, pitch, throat, mouth, out] = process.argv.slice(2);
const SamJs = require(library);
const sam = new SamJs({speed: +speed, pitch: +pitch, throat: +throat, mouth: +mouth});
const samples = sam.buf32(text);
if (!samples) { process.stderr.write(`SAM could not say ${JSON.stringify(text)}\n`); process.exit(1); }
require('fs').writeFileSync(out, Buffer.from(samples.buffer));
