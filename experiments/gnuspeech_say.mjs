// GnuSpeech, the articulatory (tube-model) synthesiser, through its WASM build (npm @echogarden/gnuspeech-wasm):
// text -> a WAV at GnuSpeech's own rate. Its control model is the package's default with the voice (vocal-tract
// preset), tempo and pitch offset (semitones) replaced, as the package's own synthesize() replaces the first two.
// node experiments/gnuspeech_say.mjs PACKAGE_DIR TEXT VOICE TEMPO PITCH_OFFSET OUT.wav
import fs from 'fs';
import path from 'path';
const [packageDir, text, voice, tempo, pitchOffset, out] = process.argv.slice(2);
const { defaultTrmControlModelFileContent: model } = await import(
  path.resolve(packageDir, 'dist/utilities/DefaultTrmControlModel.js'));
const config = model.replace('voice_name = male', `voice_name = ${voice}`)
  .replace('tempo = 1.0', `tempo = ${Number(tempo)}`)
  .replace('pitch_offset = -4.0', `pitch_offset = ${Number(pitchOffset)}`);
for (const [key, value] of [['voice_name', voice], ['tempo', Number(tempo)], ['pitch_offset', Number(pitchOffset)]]) {
  if (!config.includes(`${key} = ${value}`)) { process.stderr.write(`gnuspeech: could not set ${key}\n`); process.exit(1); }
}
const M = await (await import(path.resolve(packageDir, 'wasm/gnuspeech.js'))).default();
M.FS.writeFile('/data/en/trm_control_model.txt', config);
const cString = (s) => { const b = Buffer.from(s + '\0', 'utf8'); const q = M._malloc(b.length); M.HEAPU8.set(b, q); return q; };
M._GnuSpeech_synthesizeToFile(cString(text), cString('./out.wav'), cString('/data/en'), cString('./out-params.txt'), 0);
fs.writeFileSync(out, M.FS.readFile('./out.wav'));
