package main

import "syscall"

// sysProcAttr kills a child (Traefik, redis-server) if the benchmark dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
