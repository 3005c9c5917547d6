package fastpath

// The BPF object and its Go bindings are generated and committed, so building
// the daemon needs no clang; `make bpf` (or `go generate ./relay/fastpath/`)
// regenerates them, and gen_test.go checks they match bpf/turnfwd.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" -target bpfel -type c2p_key -type p2c_key -type fwd_val turnfwd bpf/turnfwd.c
//go:generate sh -c "sha256sum bpf/turnfwd.c > turnfwd.c.sha256"
