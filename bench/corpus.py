#!/usr/bin/env python3
"""The benchmark corpus: deterministic in (seed, size). Usage: corpus.py ROOT SIZE_MIB SEED

About half incompressible bytes, half text-like: up to 2,000 small files (1-64 KiB) in 20
folders, then large files of 64-256 MiB. bench/pipeline.sh and bench/sync.sh share it."""
import hashlib, os, random, shutil, subprocess, sys

root, total_mb, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
MIB = 1 << 20
total = total_mb * MIB
use_openssl = shutil.which("openssl") is not None


def random_stream(name, n):
    """Yields n incompressible bytes, deterministic in (seed, name)."""
    if n <= 0:
        return
    if use_openssl:
        digest = hashlib.sha256(f"filestore-bench:{seed}:{name}".encode()).hexdigest()
        cmd = (f"head -c {n} /dev/zero | openssl enc -aes-128-ctr -nosalt "
               f"-K {digest[:32]} -iv {digest[32:]}")
        with subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE) as p:
            left = n
            while left:
                block = p.stdout.read(min(left, MIB))
                if not block:
                    raise SystemExit(f"openssl stream for {name} ended early")
                left -= len(block)
                yield block
        if p.returncode != 0:
            raise SystemExit(f"openssl failed for {name}")
    else:
        rng = random.Random(f"filestore-bench:{seed}:{name}")
        left = n
        while left:
            k = min(left, MIB)
            left -= k
            yield rng.randbytes(k)


class Text:
    """Text-like bytes: phrases of pseudo-words with Zipf-like frequencies, line breaks and
    punctuation. Files are drawn from a pool of 64Ki phrases (fast; compresses about like
    the same words drawn one by one: ~2.8x with zstd -1)."""

    def __init__(self, rng):
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        lw = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 6, 4.3, 4, 2.8, 2.8, 2.4, 2.4, 2.2, 2, 2, 1.9,
              1.5, 1, 0.8, 0.2, 0.2, 0.1, 0.1]
        vocab = set()
        while len(vocab) < 8000:
            vocab.add("".join(rng.choices(letters, weights=lw, k=rng.randint(1, 10))))
        vocab = sorted(vocab)
        rng.shuffle(vocab)
        tokens = [w + " " for w in vocab] + ["\n", ", ", ". ", "0 ", "1 ", "2024-01-01 "]
        weights = [1 / (i + 1) for i in range(len(vocab))] + [1.2, 0.9, 0.7, 0.2, 0.2, 0.1]
        cum, acc = [], 0.0
        for w in weights:
            acc += w
            cum.append(acc)
        self.phrases = [
            "".join(rng.choices(tokens, cum_weights=cum, k=rng.randint(2, 6)))
            for _ in range(1 << 16)
        ]
        self.avg = max(1, sum(map(len, self.phrases)) // len(self.phrases))
        self.rng = rng

    def stream(self, n):
        left = n
        while left:
            k = min(40_000, left // self.avg + 8)
            data = "".join(self.rng.choices(self.phrases, k=k)).encode()[:left]
            left -= len(data)
            yield data


def write(path, blocks):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for b in blocks:
            f.write(b)


plan_rng = random.Random(f"filestore-bench-plan:{seed}:{total_mb}")
text = Text(random.Random(f"filestore-bench-text:{seed}"))

# Many small files (1-64 KiB, alternating binary and text) in 20 subfolders: up to 2,000,
# about an eighth of the corpus at most.
n_small = max(20, min(2000, (total // 8) // (33 * 1024)))
small_bin = small_txt = 0
small_rand = b"".join(random_stream("small", n_small * 64 * 1024 // 2 + 64 * 1024))
pos = 0
for i in range(n_small):
    size = plan_rng.randint(1024, 64 * 1024)
    path = os.path.join(root, "small", f"d{i % 20:02d}", f"f{i:04d}")
    if i % 2 == 0:
        write(path + ".bin", [small_rand[pos:pos + size]])
        pos += size
        small_bin += size
    else:
        write(path + ".txt", text.stream(size))
        small_txt += size
del small_rand


def split_large(budget):
    """Large-file sizes: 64-256 MiB each; the last takes what is left."""
    sizes = []
    while budget > 0:
        size = plan_rng.randint(64, 256) * MIB
        if budget - size < 64 * MIB:
            size = budget
        sizes.append(size)
        budget -= size
    return sizes


for i, size in enumerate(split_large(total // 2 - small_bin)):
    write(os.path.join(root, "large", f"random-{i:02d}.bin"), random_stream(f"large-{i}", size))
for i, size in enumerate(split_large(total - total // 2 - small_txt)):
    write(os.path.join(root, "large", f"text-{i:02d}.txt"), text.stream(size))
