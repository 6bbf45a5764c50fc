// SVOX Pico through its WASM build (npm @echogarden/svoxpico-wasm): text (with Pico's <pitch>/<speed> markup) ->
// a 16 kHz 16-bit WAV. The call sequence is pico2wave's (picoapi.h); pointers are 32-bit in WASM.
// node experiments/pico_say.mjs MODULE.js TA.bin SG.bin TEXT OUT.wav
import fs from 'fs';
const [modulePath, taFile, sgFile, text, out] = process.argv.slice(2);
const SvoxPico = (await import(modulePath)).default;
const M = await SvoxPico();
M.FS.writeFile('/ta.bin', fs.readFileSync(taFile));
M.FS.writeFile('/sg.bin', fs.readFileSync(sgFile));
const MEMORY = 2500000, BUSY = 201, IDLE = 200;
const cString = (s) => { const b = Buffer.from(s + '\0', 'utf8'); const q = M._malloc(b.length); M.HEAPU8.set(b, q); return [q, b.length]; };
const check = (ret, what) => { if (ret !== 0) { process.stderr.write(`pico ${what} failed (${ret})\n`); process.exit(1); } };
const slots = M._malloc(64);  // system, ta, sg, engine, bytes sent, bytes received, data type
check(M._pico_initialize(M._malloc(MEMORY), MEMORY, slots), 'initialize');
const system = M.getValue(slots, 'i32');
check(M._pico_loadResource(system, cString('/ta.bin')[0], slots + 4), 'load text analysis');
check(M._pico_loadResource(system, cString('/sg.bin')[0], slots + 8), 'load signal generation');
const taName = M._malloc(64), sgName = M._malloc(64);
check(M._pico_getResourceName(system, M.getValue(slots + 4, 'i32'), taName), 'resource name');
check(M._pico_getResourceName(system, M.getValue(slots + 8, 'i32'), sgName), 'resource name');
const [voice] = cString('PicoVoice');
check(M._pico_createVoiceDefinition(system, voice), 'voice');
check(M._pico_addResourceToVoiceDefinition(system, voice, taName), 'add text analysis');
check(M._pico_addResourceToVoiceDefinition(system, voice, sgName), 'add signal generation');
check(M._pico_newEngine(system, voice, slots + 12), 'engine');
const engine = M.getValue(slots + 12, 'i32');
let [input, remaining] = cString(text);
const buffer = M._malloc(256), chunks = [];
while (remaining > 0) {
  check(M._pico_putTextUtf8(engine, input, remaining, slots + 16), 'put text');
  const sent = M.getValue(slots + 16, 'i16');
  remaining -= sent; input += sent;
  let status;
  do {
    status = M._pico_getData(engine, buffer, 128, slots + 20, slots + 24);
    if (status !== BUSY && status !== IDLE) { process.stderr.write(`pico getData failed (${status})\n`); process.exit(1); }
    const received = M.getValue(slots + 20, 'i16');
    if (received > 0) chunks.push(Buffer.from(M.HEAPU8.slice(buffer, buffer + received)));
  } while (status === BUSY);
}
const pcm = Buffer.concat(chunks), header = Buffer.alloc(44);
header.write('RIFF', 0); header.writeUInt32LE(36 + pcm.length, 4); header.write('WAVE', 8); header.write('fmt ', 12);
header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20); header.writeUInt16LE(1, 22); header.writeUInt32LE(16000, 24);
header.writeUInt32LE(32000, 28); header.writeUInt16LE(2, 32); header.writeUInt16LE(16, 34); header.write('data', 36);
header.writeUInt32LE(pcm.length, 40);
fs.writeFileSync(out, Buffer.concat([header, pcm]));
