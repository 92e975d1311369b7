#!/bin/sh
# Rebuilds bpf/sluice.o from bpf/sluice.c and bpf/tcp_redirect.o from
# bpf/tcp_redirect.c. Only needed after editing the C
# source: the object is committed, and running Sluice needs no compiler.
# Needs clang (Debian: apt-get install clang) and the kernel UAPI headers
# (linux-libc-dev).
set -eu
cd "$(dirname "$0")"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
for name in sluice tcp_redirect; do
  clang -O2 -g0 -target bpf -Wall -Werror -I"/usr/include/$multiarch" -c "$name.c" -o "$name.o"
  echo "built bpf/$name.o ($(wc -c < "$name.o") bytes)"
done
