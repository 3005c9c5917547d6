//go:build race

package relay

// raceEnabled: the race detector changes frame and stack sizes, so tests
// that measure stacks skip under it.
const raceEnabled = true
