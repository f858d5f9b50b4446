package console

import (
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// barChart is a bar chart drawn on the server as inline SVG: no script, no
// fonts or images fetched, and the same figures give the same bytes. Text
// is escaped; numbers are written with a fixed number of decimals. Colours
// come from the style sheet (.chart .bar, .bar.alert, .threshold), so the
// chart follows the page's theme and prints.
//
// A vertical chart has one column per bar, labels under the axis, a y axis
// with ticks, and optionally a dashed threshold line. A horizontal chart
// has one row per bar, labelled on the left, on a fixed scale from 0 to
// Max, with each bar's text after it.
type barChart struct {
	ID    string // the svg element's id
	Label string // its aria-label: what the chart shows, in words
	Unit  string // the y axis title, and after values in bar titles
	Bars  []bar
	// Threshold is drawn as a dashed line labelled ThresholdLabel when
	// HasThreshold.
	Threshold      float64
	HasThreshold   bool
	ThresholdLabel string
	// Max is the least top of the scale (a horizontal chart's whole
	// scale); the data and the threshold may raise a vertical chart's.
	Max        float64
	Horizontal bool
}

// bar is one bar. Text is written on or after the bar (default: Value),
// Title is its tooltip (default: "Label: Text Unit").
type bar struct {
	Label string
	Value float64
	Text  string
	Title string
	Alert bool
}

// Geometry of the charts, in SVG user units (CSS pixels at scale 1).
const (
	chartPlotHeight = 200 // a vertical chart's plot area
	chartTop        = 16  // room for the top tick's label
	chartAxisLeft   = 52  // tick labels and the axis title
	chartRight      = 16
	chartCharWidth  = 7  // an 11px character's width, erring wide (DejaVu Sans's underscores and m's): a label that is estimated short is clipped
	chartRowHeight  = 22 // a horizontal chart's row
)

// SVG draws the chart.
func (c barChart) SVG() template.HTML {
	if c.Horizontal {
		return c.horizontal()
	}
	return c.vertical()
}

func (c barChart) vertical() template.HTML {
	n := len(c.Bars)
	slot := 64.0
	if n > 12 {
		slot = math.Max(28, 768/float64(n))
	}
	longest := 0
	top := c.Max
	if c.HasThreshold {
		top = math.Max(top, c.Threshold)
	}
	// Labels are turned 40° so that long state names fit under narrow
	// columns: the margin below is what the longest one needs, and the
	// one on the left what the first ones need, reaching back under the
	// axis.
	cos, sin := math.Cos(40*math.Pi/180), math.Sin(40*math.Pi/180)
	x0 := float64(chartAxisLeft)
	for i, b := range c.Bars {
		l := len([]rune(b.Label))
		longest = max(longest, l)
		top = math.Max(top, b.Value)
		reach := float64(l)*chartCharWidth*cos - slot*(float64(i)+0.5)
		x0 = math.Max(x0, math.Ceil(reach)+4)
	}
	top, step := niceScale(top)
	bottom := 18 + math.Ceil(float64(longest)*chartCharWidth*sin)
	right := float64(chartRight)
	if c.HasThreshold {
		// The threshold's label goes right of the plot, clear of the bars.
		right += 6 + math.Ceil(float64(len([]rune(c.ThresholdLabel)))*chartCharWidth)
	}
	plotW := slot * float64(max(n, 1))
	width := x0 + plotW + right
	height := chartTop + chartPlotHeight + bottom
	y := func(v float64) float64 { return chartTop + chartPlotHeight - v/top*chartPlotHeight }

	var s svgWriter
	s.open(c.ID, c.Label, width, height)
	// The y axis: gridlines, ticks and the unit.
	s.WriteString(`<g class="axis y">`)
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > top+step/1e6 {
			break
		}
		yy := y(v)
		s.printf(`<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, svgNum(x0), svgNum(yy), svgNum(x0+plotW), svgNum(yy))
		s.printf(`<text x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, svgNum(x0-6), svgNum(yy), tickText(v))
	}
	s.printf(`<line class="axis-line" x1="%s" y1="%s" x2="%s" y2="%s"/>`, svgNum(x0), svgNum(y(0)), svgNum(x0), svgNum(y(top)))
	s.printf(`<line class="axis-line" x1="%s" y1="%s" x2="%s" y2="%s"/>`, svgNum(x0), svgNum(y(0)), svgNum(x0+plotW), svgNum(y(0)))
	if c.Unit != "" {
		s.printf(`<text class="axis-title" transform="translate(12 %s) rotate(-90)" text-anchor="middle">%s</text>`, svgNum(y(top/2)), svgEscape(c.Unit))
	}
	s.WriteString(`</g>`)
	// The bars, each with its value above it and its label below the axis.
	barW := math.Min(36, slot*0.7)
	for i, b := range c.Bars {
		cx := x0 + slot*(float64(i)+0.5)
		v := math.Max(0, math.Min(b.Value, top))
		text := c.text(b)
		s.WriteString(`<g class="bar-group">`)
		s.printf(`<rect class="%s" x="%s" y="%s" width="%s" height="%s" data-value="%s"><title>%s</title></rect>`,
			barClass(b), svgNum(cx-barW/2), svgNum(y(v)), svgNum(barW), svgNum(y(0)-y(v)), svgEscape(text), svgEscape(c.title(b)))
		s.printf(`<text class="value" x="%s" y="%s" text-anchor="middle">%s</text>`, svgNum(cx), svgNum(y(v)-4), svgEscape(text))
		s.printf(`<text class="label" transform="translate(%s %s) rotate(-40)" text-anchor="end">%s</text>`, svgNum(cx+3), svgNum(y(0)+12), svgEscape(b.Label))
		s.WriteString(`</g>`)
	}
	if c.HasThreshold {
		ty := y(c.Threshold)
		s.printf(`<line class="threshold" x1="%s" y1="%s" x2="%s" y2="%s"/>`, svgNum(x0), svgNum(ty), svgNum(x0+plotW), svgNum(ty))
		s.printf(`<text class="threshold-label" x="%s" y="%s" dominant-baseline="middle">%s</text>`, svgNum(x0+plotW+6), svgNum(ty), svgEscape(c.ThresholdLabel))
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

func (c barChart) horizontal() template.HTML {
	longest := 0
	for _, b := range c.Bars {
		longest = max(longest, len([]rune(b.Label)))
	}
	left := 12 + math.Ceil(float64(longest)*chartCharWidth)
	const plotW, textW = 320, 150
	top := c.Max
	if !(top > 0) {
		top = 1
	}
	width := left + plotW + textW
	height := float64(len(c.Bars))*chartRowHeight + 8
	var s svgWriter
	s.open(c.ID, c.Label, width, height)
	for i, b := range c.Bars {
		y := 4 + float64(i)*chartRowHeight
		w := math.Max(0, math.Min(b.Value, top)) / top * plotW
		text := c.text(b)
		s.WriteString(`<g class="bar-group">`)
		s.printf(`<text class="label" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, svgNum(left-6), svgNum(y+chartRowHeight/2-2), svgEscape(b.Label))
		s.printf(`<rect class="track" x="%s" y="%s" width="%s" height="%s"/>`, svgNum(left), svgNum(y+2), svgNum(plotW), svgNum(chartRowHeight-8))
		s.printf(`<rect class="%s" x="%s" y="%s" width="%s" height="%s" data-value="%s"><title>%s</title></rect>`,
			barClass(b), svgNum(left), svgNum(y+2), svgNum(w), svgNum(chartRowHeight-8), svgEscape(text), svgEscape(c.title(b)))
		s.printf(`<text class="value" x="%s" y="%s" dominant-baseline="middle">%s</text>`, svgNum(left+w+6), svgNum(y+chartRowHeight/2-2), svgEscape(text))
		s.WriteString(`</g>`)
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

func (c barChart) text(b bar) string {
	if b.Text != "" {
		return b.Text
	}
	return strconv.FormatFloat(b.Value, 'f', 3, 64)
}

func (c barChart) title(b bar) string {
	if b.Title != "" {
		return b.Title
	}
	t := b.Label + ": " + c.text(b)
	if c.Unit != "" {
		t += " " + c.Unit
	}
	return t
}

func barClass(b bar) string {
	if b.Alert {
		return "bar alert"
	}
	return "bar"
}

// svgWriter builds the markup.
type svgWriter struct{ strings.Builder }

func (s *svgWriter) open(id, label string, w, h float64) {
	s.WriteString(`<svg`)
	if id != "" {
		s.printf(` id="%s"`, svgEscape(id))
	}
	s.printf(` class="chart" role="img" aria-label="%s" viewBox="0 0 %s %s" width="%s" height="%s">`, svgEscape(label), svgNum(w), svgNum(h), svgNum(w), svgNum(h))
}

// printf substitutes %s only: every argument is already a string, escaped
// or a number this file formatted, so no fmt verb can misread it.
func (s *svgWriter) printf(format string, args ...string) {
	for _, a := range args {
		i := strings.Index(format, "%s")
		if i < 0 {
			break
		}
		s.WriteString(format[:i])
		s.WriteString(a)
		format = format[i+2:]
	}
	s.WriteString(format)
}

// svgEscape escapes text for an element's content or a quoted attribute.
func svgEscape(s string) string { return html.EscapeString(s) }

// svgNum writes a coordinate with at most one decimal, never "-0".
func svgNum(v float64) string {
	r := math.Round(v*10) / 10
	if r == 0 {
		r = 0 // -0 becomes 0
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// tickText writes an axis value: at most two decimals, no trailing zeros.
func tickText(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" || s == "" {
		return "0"
	}
	return s
}

// niceScale rounds the top of a scale up to a whole number of steps of 1,
// 2, 2.5 or 5 times a power of ten, about five of them. A top that is not
// a positive finite number is taken as 1.
func niceScale(top float64) (float64, float64) {
	if !(top > 0) || math.IsInf(top, 0) {
		top = 1
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return math.Ceil(top/step-1e-9) * step, step
}
