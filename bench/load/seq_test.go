package load

import "testing"

func TestSeqTracker(t *testing.T) {
	s := newSeqTracker(10)
	for _, k := range []int{0, 1, 3, 2, 2, 5, 4, 9, 12, -1} {
		s.add(k)
	}
	if s.unique != 7 || s.dup != 1 || s.reord != 2 {
		t.Fatalf("unique %d dup %d reord %d, want 7 1 2", s.unique, s.dup, s.reord)
	}
	for _, k := range []int{6, 7, 8} {
		if s.has(k) {
			t.Errorf("has %d", k)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	b := make([]byte, 160)
	fillPayload(b, 7, 1234)
	if !checkPayload(b, 7, 1234, 160) {
		t.Fatal("own payload does not check")
	}
	for _, c := range []struct {
		s, k uint32
		n    int
	}{{8, 1234, 160}, {7, 1235, 160}, {7, 1234, 159}} {
		if checkPayload(b[:min(len(b), c.n)], c.s, c.k, c.n) && c.n == 160 {
			t.Errorf("payload of 7/1234 checks as %d/%d", c.s, c.k)
		}
	}
	b[100] ^= 1
	if checkPayload(b, 7, 1234, 160) {
		t.Error("modified payload checks")
	}
}
