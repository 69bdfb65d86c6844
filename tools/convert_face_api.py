"""Convert face-api.js's FaceExpressionNet weights from the npm tarball into the bridge's package data.

    npm pack @vladmandic/face-api            # -> vladmandic-face-api-<version>.tgz
    python tools/convert_face_api.py vladmandic-face-api-1.7.15.tgz [--reference]

Writes ``bridge/features/weights/face_expression.npz``: the weights exactly as shipped (8-bit quantised arrays with
their scale/min, float32 biases), the manifest entries, and provenance (package name and version, sha256 of the
tarball and of the ``.bin``, the MIT licence text); and ``bridge/features/weights/FACE_API_LICENSE``.

``--reference`` also runs the package's own tfjs build (``dist/face-api.esm.js``, tfjs's pure-JS CPU backend) in
Node on real face crops (``skimage.data.astronaut()`` and faces of ``skimage.data.lfw_subset()``) and records its
probabilities and 256-d embeddings into ``tests/fixtures/face_expression_ref.npz``; ``tests/test_expression.py``
checks the PyTorch port against it. Node >= 18 is needed for that step only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bridge" / "features" / "weights" / "face_expression.npz"
LICENSE_OUT = ROOT / "bridge" / "features" / "weights" / "FACE_API_LICENSE"
FIXTURE = ROOT / "tests" / "fixtures" / "face_expression_ref.npz"
MANIFEST = "package/model/face_expression_model-weights_manifest.json"
DTYPE_BYTES = {"float32": 4, "int32": 4, "uint8": 1, "uint16": 2, "float16": 2}


def read_tarball(path: Path) -> tuple[dict, list[dict], bytes, str, str]:
    with tarfile.open(path) as tar:
        pkg = json.load(tar.extractfile("package/package.json"))
        manifest = json.load(tar.extractfile(MANIFEST))
        if len(manifest) != 1 or len(manifest[0]["paths"]) != 1:
            raise SystemExit(f"{MANIFEST}: expected one weight group with one file, got {manifest}")
        data = tar.extractfile("package/model/" + manifest[0]["paths"][0]).read()
        lic = tar.extractfile("package/LICENSE").read().decode()
    return pkg, manifest[0]["weights"], data, lic, hashlib.sha256(data).hexdigest()


def split_weights(specs: list[dict], data: bytes) -> dict[str, np.ndarray]:
    """The .bin is the weights' raw bytes back to back, in manifest order (little endian)."""
    out, pos = {}, 0
    for w in specs:
        q = w.get("quantization")
        dtype = q["dtype"] if q else w["dtype"]
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        nbytes = n * DTYPE_BYTES[dtype]
        out[w["name"]] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=pos).copy()
        pos += nbytes
    if pos != len(data):
        raise SystemExit(f"manifest describes {pos} bytes, the .bin has {len(data)}")
    return out


def convert(tgz: Path) -> dict:
    pkg, specs, data, lic, bin_sha = read_tarball(tgz)
    arrays = split_weights(specs, data)
    entries, npz = [], {}
    for i, w in enumerate(specs):
        key = f"w{i:02d}"
        npz[key] = arrays[w["name"]]
        e = {"name": w["name"], "shape": w["shape"], "dtype": w["dtype"], "key": key}
        if w.get("quantization"):
            e["quantization"] = w["quantization"]
        entries.append(e)
    meta = {
        "network": "face-api.js FaceExpressionNet (FaceFeatureExtractor + fc), 112x112 RGB -> 7 expressions",
        "labels": ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"],
        "package": pkg["name"], "version": pkg["version"], "license": pkg.get("license", "MIT"),
        "tarball": tgz.name, "tarball_sha256": hashlib.sha256(tgz.read_bytes()).hexdigest(),
        "bin_sha256": bin_sha, "weights": entries,
        "training_data": "not disclosed by face-api.js",
        "notice": lic,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=json.dumps(meta), **npz)
    OUT.write_bytes(buf.getvalue())
    LICENSE_OUT.write_text(
        f"The face expression weights in face_expression.npz are converted from {pkg['name']} {pkg['version']}\n"
        f"(npm tarball sha256 {meta['tarball_sha256']}, model .bin sha256 {bin_sha}),\n"
        "the weights of face-api.js by Vincent Muehler, under this licence:\n\n" + lic)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) from {pkg['name']} {pkg['version']}")
    return meta


# ---------------------------------------------------------------------------------------------------------------
# reference outputs from the package's own tfjs build
# ---------------------------------------------------------------------------------------------------------------

def reference_inputs() -> tuple[list[np.ndarray], list[str]]:
    """Real face crops of different sizes and aspect ratios (RGB, 0..255 integers as float32)."""
    from skimage import data

    astro = data.astronaut()
    lfw = data.lfw_subset()
    crops, names = [], []
    for (y0, y1, x0, x1) in ((20, 230, 150, 330), (40, 200, 175, 305), (0, 300, 100, 380)):
        crops.append(astro[y0:y1, x0:x1].astype(np.float32))
        names.append(f"astronaut[{y0}:{y1},{x0}:{x1}]")
    for i in (0, 1, 2, 3, 100, 150):
        g = np.round(lfw[i] * 255.0).astype(np.float32)
        crops.append(np.repeat(g[:, :, None], 3, axis=2))
        names.append(f"lfw_subset[{i}]")
    return crops, names


NODE_SCRIPT = r"""
import util from 'util';
import fs from 'fs';
globalThis.__nodeUtil = util;
const faceapi = await import(process.argv[2]);
const tf = faceapi.tf;
await tf.setBackend('cpu'); await tf.ready();
const manifest = JSON.parse(fs.readFileSync(process.argv[3]));
const buf = fs.readFileSync(process.argv[4]);
const wm = tf.io.decodeWeights(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), manifest[0].weights);
const net = new faceapi.FaceExpressionNet();
net.loadFromWeightMap(wm);
const spec = JSON.parse(fs.readFileSync(process.argv[5]));
const raw = fs.readFileSync(process.argv[6]);
const f32 = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
const out = {probs: [], embed: [], tf: tf.version.tfjs || tf.version['tfjs-core'], backend: tf.getBackend()};
let off = 0;
for (const [h, w] of spec) {
  const n = h * w * 3;
  const x = tf.tensor3d(f32.slice(off, off + n), [h, w, 3]);
  off += n;
  const input = await faceapi.toNetInput(x);
  out.probs.push(Array.from(net.forwardInput(input).dataSync()));
  out.embed.push(Array.from(net.faceFeatureExtractor.forwardInput(input).dataSync()));
}
fs.writeFileSync(process.argv[7], JSON.stringify(out));
"""


def record_reference(tgz: Path, meta: dict) -> None:
    crops, names = reference_inputs()
    with tempfile.TemporaryDirectory() as td, tarfile.open(tgz) as tar:
        td = Path(td)
        bundle = tar.extractfile("package/dist/face-api.esm.js").read().decode()
        # the bundle's Node platform shim asks a stubbed require('util') for TextEncoder; hand it Node's util
        # (platform plumbing only, the network code is untouched)
        patched = bundle.replace("this.util=AR(),", "this.util=globalThis.__nodeUtil,", 1)
        if patched == bundle:
            raise SystemExit("could not find the tfjs Node platform shim to patch in face-api.esm.js")
        (td / "face-api.mjs").write_text(patched)
        (td / "manifest.json").write_bytes(tar.extractfile(MANIFEST).read())
        (td / "weights.bin").write_bytes(tar.extractfile("package/model/face_expression_model.bin").read())
        (td / "ref.mjs").write_text(NODE_SCRIPT)
        (td / "spec.json").write_text(json.dumps([c.shape[:2] for c in crops]))
        (td / "inputs.f32").write_bytes(b"".join(np.ascontiguousarray(c, "<f4").tobytes() for c in crops))
        cmd = ["node", str(td / "ref.mjs"), str(td / "face-api.mjs"), str(td / "manifest.json"),
               str(td / "weights.bin"), str(td / "spec.json"), str(td / "inputs.f32"), str(td / "out.json")]
        subprocess.run(cmd, check=True)
        out = json.loads((td / "out.json").read_text())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(FIXTURE, probs=np.asarray(out["probs"], np.float32), embed=np.asarray(out["embed"], np.float32),
             names=np.array(names), shapes=np.array([c.shape[:2] for c in crops]),
             meta=json.dumps({"package": meta["package"], "version": meta["version"], "tfjs": out["tf"],
                              "backend": out["backend"], "bin_sha256": meta["bin_sha256"]}))
    print(f"wrote {FIXTURE}: {len(crops)} real face crops, tfjs {out['tf']} ({out['backend']} backend)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarball", type=Path, help="vladmandic-face-api-<version>.tgz from `npm pack @vladmandic/face-api`")
    ap.add_argument("--reference", action="store_true", help="also record tfjs reference outputs (needs node)")
    a = ap.parse_args(argv)
    if not a.tarball.is_file():
        print(f"{a.tarball}: no such file; run `npm pack @vladmandic/face-api` first", file=sys.stderr)
        return 2
    meta = convert(a.tarball)
    if a.reference:
        record_reference(a.tarball, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
