"""CPU seconds and wall seconds per forward of a variant, for a given source tree (to compare two
checkouts run one after the other on the same machine; CPU time is less disturbed by other
load than wall time).

    python benchmarks/forward_cpu_time.py SRC_DIR VARIANT SIZE [REPEATS] [THREADS]
    e.g. python benchmarks/forward_cpu_time.py src light 128 4 1
"""
import resource
import sys
import time


def main() -> None:
    src, variant, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    sys.path.insert(0, src)
    import torch

    from mambairv2 import create_model

    torch.set_num_threads(threads)
    model = create_model(variant, scale=4).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(2):
            model(x)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(repeats):
            model(x)
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / repeats
    print(f"{src} {variant} {size}²: wall {(t1 - t0) / repeats:.3f} s, cpu {cpu:.3f} s per forward")


if __name__ == "__main__":
    main()
