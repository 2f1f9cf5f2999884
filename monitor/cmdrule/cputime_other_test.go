//go:build !unix

package cmdrule

import "time"

func cpuTime() time.Duration { return 0 }
