// Package report holds the figures of a bench run: per-direction counts,
// latency percentiles, RFC 3550 jitter, throughput over time and the CPU
// and memory the system under test spent. A Report prints as a table, JSON
// or an SVG plot.
package report
