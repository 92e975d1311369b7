#!/bin/sh
# Rebuilds bpf/sluice.o from bpf/sluice.c. Only needed after editing the C
# source: the object is committed, and running Sluice needs no compiler.
# Needs clang (Debian: apt-get install clang) and the kernel UAPI headers
# (linux-libc-dev).
set -eu
cd "$(dirname "$0")"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
clang -O2 -g0 -target bpf -Wall -Werror -I"/usr/include/$multiarch" -c sluice.c -o sluice.o
echo "built bpf/sluice.o ($(wc -c < sluice.o) bytes)"
