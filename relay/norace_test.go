//go:build !race

package relay

// raceEnabled: see race_test.go.
const raceEnabled = false
