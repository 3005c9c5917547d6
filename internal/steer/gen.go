package steer

// The BPF object and its Go bindings are generated and committed, so building
// the daemon needs no clang; `make bpf` (or `go generate ./internal/steer/`)
// regenerates them, and gen_test.go checks they match bpf/steer.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" -target bpfel -type port_key -type port_val steer bpf/steer.c
//go:generate sh -c "sha256sum bpf/steer.c > steer.c.sha256"
