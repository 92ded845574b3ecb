package storetest

import "syscall"

// setParentDeathSignal asks the kernel to kill the server when the test
// binary exits, however it exits (a -timeout panic runs no cleanups).
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
