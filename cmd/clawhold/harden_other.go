//go:build !linux

package main

// harden has no portable equivalent; clawhold's supported platform is Linux.
func harden() error { return nil }
