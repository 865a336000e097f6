//go:build !linux

package main

import "syscall"

// sysProcAttr: only Linux can kill children when the parent dies.
func sysProcAttr() *syscall.SysProcAttr { return nil }
