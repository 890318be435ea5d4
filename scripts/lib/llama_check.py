"""Check that the installed llama-cpp-python runs a quantized model on this CPU.

Usage: python scripts/lib/llama_check.py MODEL.gguf   (scripts/lib/venv.sh passes the
Q8_0 fixture, fixtures/tiny-llama-q8_0.gguf)

Exit 0 and print llama.cpp's system info when a few tokens came out. A library built for
another CPU, or with instructions this machine's OS does not enable (AMX tiles advertised
by cpuid but not granted by the kernel or hypervisor), dies here with SIGILL instead of in
a user's first call: F16 models take other code paths and can run while every quantized
model (Gemma 3 270M is Q4_K_M) crashes, so the check loads a quantized one. Run it in a
child process: a SIGILL kills the interpreter, not the caller.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    import llama_cpp

    llama = llama_cpp.Llama(model_path=argv[1], n_ctx=64, n_batch=16, n_ubatch=16, n_threads=1,
                            n_gpu_layers=0, seed=1, verbose=False)
    tokens = []
    for token in llama.generate(llama.tokenize(b"the joke"), top_k=1, temp=0.0):
        tokens.append(token)
        if len(tokens) == 4:
            break
    llama.close()
    if len(tokens) != 4:
        print(f"llama_check: expected 4 tokens, got {len(tokens)}", file=sys.stderr)
        return 1
    info = llama_cpp.llama_print_system_info()
    print(" ".join((info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)).split()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
