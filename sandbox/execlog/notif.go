//go:build linux

package execlog

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI for seccomp user notification (include/uapi/linux/seccomp.h);
// golang.org/x/sys/unix has the ioctl numbers but not the structs.

type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

type seccompNotif struct {
	ID    uint64
	PID   uint32 // thread id, in the pid namespace of the process calling RECV
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

// notifRecv fills n with the next notification. RECV requires n zeroed.
func notifRecv(fd int, n *seccompNotif) error {
	*n = seccompNotif{}
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
}

// notifIDValid reports whether the task behind id is still blocked in the
// notified syscall, i.e. its pid was not reused while we read /proc.
func notifIDValid(fd int, id uint64) bool {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

// notifContinue lets the syscall run as if it had not been intercepted.
func notifContinue(fd int, id uint64) error {
	resp := seccompNotifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp))
}

// notifSyncWakeUp asks the kernel (6.6+) to wake the supervisor on the
// notifying task's CPU and switch to it directly: for a block-read-reply
// round trip like ours it cuts scheduler latency. Errors are ignored by the
// caller; it is only an optimisation.
func notifSyncWakeUp(fd int) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS), unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	if e != 0 {
		return e
	}
	return nil
}
