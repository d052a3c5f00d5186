package capture

// The eBPF object is generated and committed (flow_bpfel.go, flow_bpfel.o) so
// that building Palisade needs no clang. Regenerate after editing bpf/flow.c:
//
//	apt-get install clang-14 llvm-14 linux-libc-dev
//	go generate ./internal/agent/capture
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type flow_key -type flow_val -type inner_key -type inner_val flow bpf/flow.c
