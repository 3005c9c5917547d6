package report

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPlotLabelsAndLegend: the TURN plot's latency axis says round trip,
// and the legend sits below the axis labels instead of on them.
func TestPlotLabelsAndLegend(t *testing.T) {
	for _, tc := range []struct{ kind, want, not string }{
		{"turn", "round-trip latency", "one-way"},
		{"srtp", "one-way latency", "round-trip"},
	} {
		r := &Report{Kind: tc.kind, Target: "x"}
		for _, name := range []string{"a", "b", "c", "d"} {
			r.Directions = append(r.Directions, Direction{Name: name, Latency: LatencySummary{CDF: [][2]float64{{100, 0.5}, {200, 1}}}})
		}
		var b strings.Builder
		if err := r.WritePlot(&b); err != nil {
			t.Fatal(err)
		}
		svg := b.String()
		if !strings.Contains(svg, tc.want) || strings.Contains(svg, tc.not) {
			t.Errorf("%s plot: want %q and no %q", tc.kind, tc.want, tc.not)
		}
		// Axis labels are the middle-anchored texts under the panels; the
		// legend texts follow their stroke lines.
		axisY := 0
		for _, m := range regexp.MustCompile(`<text x="\d+" y="(\d+)" text-anchor="middle">[a-z]`).FindAllStringSubmatch(svg, -1) {
			y, _ := strconv.Atoi(m[1])
			axisY = max(axisY, y)
		}
		height, _ := strconv.Atoi(regexp.MustCompile(`height="(\d+)"`).FindStringSubmatch(svg)[1])
		for _, m := range regexp.MustCompile(`stroke-width="2"/><text x="\d+" y="(\d+)">`).FindAllStringSubmatch(svg, -1) {
			y, _ := strconv.Atoi(m[1])
			if y < axisY+14 || y > height {
				t.Errorf("%s plot: legend text at y=%d, axis label at y=%d, height %d", tc.kind, y, axisY, height)
			}
		}
	}
}

func TestTickLabel(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "0"}, {62.5, "62.5"}, {187.5, "188"}, {250, "250"}, {0.25, "0.25"}, {2.5e4, "25k"}, {1.5e6, "1.5M"}} {
		if got := tickLabel(c.v); got != c.want {
			t.Errorf("tickLabel(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}
