//go:build unix

package test

import "syscall"

// flushWrites writes out what the kernel holds of every file (sync(2)),
// so that one server's writes are not written out while another is
// measured.
func flushWrites() { syscall.Sync() }
