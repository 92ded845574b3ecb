//go:build !linux

package storetest

import "syscall"

// setParentDeathSignal: only Linux kills a child when its parent dies;
// elsewhere a test binary that dies before its cleanups leaves its
// servers running.
func setParentDeathSignal(*syscall.SysProcAttr) {}
