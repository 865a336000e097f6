//go:build !linux

package redistest

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal: a server outlives a test process that dies without cleaning up.
func setParentDeathSignal(cmd *exec.Cmd) {}
