"""damaged_model.py DEFORMER_QA MODEL WORKDIR: a model file with one flipped bit in its weights is refused by name
(Model::load recomputes the file's weights checksum), where the intact file answers. LibTorch's zip reader does not
check the archive's own CRCs, so before the checksum such a file answered, and caches of the intact model accepted it.
"""
import os
import shutil
import struct
import subprocess
import sys
import zipfile


def main() -> int:
    qa, model, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    damaged = os.path.join(work, "damaged.pt")
    shutil.copy(model, damaged)
    with zipfile.ZipFile(model) as z:
        record = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(damaged, "r+b") as f:
        f.seek(record.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        at = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x04]))
    ask = ["ask", "--question", "Where does the Vell rise?", "--context", "The Vell rises in the Harn hills."]
    intact = subprocess.run([qa] + ask + ["--model", model], capture_output=True, text=True)
    if intact.returncode != 0:
        print("FAIL: the intact model did not answer:", intact.stderr)
        return 1
    broken = subprocess.run([qa] + ask + ["--model", damaged], capture_output=True, text=True)
    print(broken.stderr.strip())
    if broken.returncode == 0 or "is damaged" not in broken.stderr or "Segmentation" in broken.stderr:
        print("FAIL: a damaged model file was used (exit %d)" % broken.returncode)
        return 1
    print("damaged model: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
