package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestGCTarget(t *testing.T) {
	old, had := os.LookupEnv("GOGC")
	t.Cleanup(func() {
		if had {
			os.Setenv("GOGC", old)
		} else {
			os.Unsetenv("GOGC")
		}
	})
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	os.Unsetenv("GOGC")
	if !applyGCTarget() {
		t.Fatal("GOGC unset: the daemon's target was not applied")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GC percent = %d, want %d", got, defaultGCPercent)
	}

	os.Setenv("GOGC", "200")
	if applyGCTarget() {
		t.Error("GOGC set: the daemon overrode the administrator's choice")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent = %d, want 100 (left alone)", got)
	}
}
