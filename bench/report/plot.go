package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Series is one line of a plot.
type Series struct {
	// Label is shown in the legend.
	Label string
	// Points are (x, y) pairs in data units.
	Points [][2]float64
}

var plotColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// WritePlot writes an SVG with the latency CDF (log x axis) on the left and
// throughput over time on the right, one line per direction.
func (r *Report) WritePlot(w io.Writer) error {
	var cdf, tput []Series
	for i := range r.Directions {
		d := &r.Directions[i]
		label := d.Name
		if len(r.Directions) == 1 && r.Target != "" {
			label = r.Target + " " + d.Name
		}
		cdf = append(cdf, Series{Label: label, Points: d.Latency.CDF})
		var pts [][2]float64
		for _, p := range d.Throughput {
			pts = append(pts, [2]float64{p.T, p.PPS})
		}
		tput = append(tput, Series{Label: label, Points: pts})
	}
	title := fmt.Sprintf("%s bench: %s", r.Kind, r.Target)
	return WriteTwoPanelSVG(w, title, LatencyLabel(r.Kind), cdf, tput)
}

// LatencyLabel is the latency axis label for a report of kind (a Report's
// "turn" or "srtp", a suite's "relay" or "gateway"): bench turn times a
// round trip (client, relay, peer, relay, client), bench srtp one way
// through the gateway.
func LatencyLabel(kind string) string {
	if kind == "turn" || kind == "relay" {
		return "round-trip latency (µs, log scale)"
	}
	return "one-way latency (µs, log scale)"
}

// WriteTwoPanelSVG writes the latency CDF panel and the throughput panel
// side by side, with the legend below the axis labels.
func WriteTwoPanelSVG(w io.Writer, title, latencyLabel string, cdf, tput []Series) error {
	var b strings.Builder
	// The x axis labels sit at 372 (panel bottom 340 + 32); the legend
	// starts a line below them, up to three rows per column.
	const W, legendTop = 1100, 396
	H := legendTop + 16*min(3, len(cdf)) + 8
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="15">%s</text>`+"\n", W/2, html.EscapeString(title))
	panel(&b, 60, 40, 460, 300, latencyLabel, "fraction of packets", true, cdf)
	panel(&b, 610, 40, 460, 300, "time (s)", "packets/s received", false, tput)
	// legend
	for i, s := range cdf {
		y := legendTop + 16*(i%3)
		x := 60 + 340*(i/3)
		c := plotColors[i%len(plotColors)]
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>`+"\n",
			x, y-4, x+24, y-4, c, x+30, y, html.EscapeString(s.Label))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// panel draws axes, ticks and lines in the box (x0,y0,w,h).
func panel(b *strings.Builder, x0, y0, w, h float64, xlabel, ylabel string, logX bool, series []Series) {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range series {
		for _, p := range s.Points {
			xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
			ymax = math.Max(ymax, p[1])
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax, ymax = 0, 1, 1
	}
	if logX {
		xmin = math.Pow(10, math.Floor(math.Log10(math.Max(xmin, 0.1))))
		xmax = math.Pow(10, math.Ceil(math.Log10(math.Max(xmax, xmin*10))))
		ymax = 1
	} else {
		xmin = 0
		if xmax <= 0 {
			xmax = 1
		}
		ymax = niceCeil(ymax * 1.05)
	}
	fx := func(x float64) float64 {
		if logX {
			return x0 + w*(math.Log10(math.Max(x, xmin))-math.Log10(xmin))/(math.Log10(xmax)-math.Log10(xmin))
		}
		return x0 + w*(x-xmin)/(xmax-xmin)
	}
	fy := func(y float64) float64 { return y0 + h - h*y/ymax }
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", x0, y0, w, h)
	// y ticks
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		y := fy(v)
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			x0, y, x0+w, y, x0-4, y+4, tickLabel(v))
	}
	// x ticks
	if logX {
		for v := xmin; v <= xmax*1.001; v *= 10 {
			x := fx(v)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
				x, y0, x, y0+h, x, y0+h+16, tickLabel(v))
		}
	} else {
		for i := 0; i <= 5; i++ {
			v := xmax * float64(i) / 5
			x := fx(v)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
				x, y0, x, y0+h, x, y0+h+16, tickLabel(v))
		}
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x0+w/2, y0+h+32, html.EscapeString(xlabel))
	fmt.Fprintf(b, `<text transform="translate(%.0f,%.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", x0-46, y0+h/2, html.EscapeString(ylabel))
	for i, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		var pts strings.Builder
		for j, p := range s.Points {
			if logX && j == 0 {
				// Start the CDF at zero on the first value.
				fmt.Fprintf(&pts, "%.1f,%.1f ", fx(p[0]), fy(0))
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", fx(p[0]), fy(p[1]))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n",
			plotColors[i%len(plotColors)], strings.TrimSpace(pts.String()))
	}
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	case v == math.Trunc(v), v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	// %g rather than %.2g: 62.5 stays 62.5, never 6.2e+01.
	return fmt.Sprintf("%.3g", v)
}

// PlotPanel is one chart of WritePanelsSVG: lines over a linear x axis.
type PlotPanel struct {
	XLabel, YLabel string
	Series         []Series
}

// WritePanelsSVG writes panels two to a row under a title, each with its
// legend, in the style of WriteTwoPanelSVG (the soak report uses it).
func WritePanelsSVG(w io.Writer, title string, panels []PlotPanel) error {
	var b strings.Builder
	const W, rowH = 1100, 400
	rows := (len(panels) + 1) / 2
	H := 40 + rows*rowH
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="15">%s</text>`+"\n", W/2, html.EscapeString(title))
	for i, p := range panels {
		x0, y0 := 80+550*float64(i%2), 40+float64(rowH*(i/2))
		panel(&b, x0, y0, 440, 280, p.XLabel, p.YLabel, false, p.Series)
		for j, s := range p.Series {
			y := y0 + 332 + float64(16*j)
			c := plotColors[j%len(plotColors)]
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
				x0, y-4, x0+24, y-4, c, x0+30, y, html.EscapeString(s.Label))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
