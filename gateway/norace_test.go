//go:build !race

package gateway

// raceEnabled: the race detector slows the packet path several times, so
// load tests aim at a lower rate.
const raceEnabled = false
