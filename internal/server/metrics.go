package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palisade-dev/palisade/internal/auth"
)

// serverMetrics are the server's Prometheus metrics, in a registry of its
// own (tests run several servers in one process). Counters that live in
// the domain packages are read at scrape time.
type serverMetrics struct {
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
}

func (s *Server) newMetrics() *serverMetrics {
	m := &serverMetrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "palisade_api_request_duration_seconds",
		Help:    "API request latency by route and status code.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "code"})
	m.reg.MustRegister(m.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), flowCollector{s})
	return m
}

// instrument measures a route's latency (streams: until they end).
func (m *serverMetrics) instrument(rt Route, h http.Handler) http.Handler {
	route := rt.String()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.latency.WithLabelValues(route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(c int) {
	if !w.wrote {
		w.code, w.wrote = c, true
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streams through (they assert http.Flusher).
func (w *statusWriter) Flush() {
	w.wrote = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

var (
	descBatches  = prometheus.NewDesc("palisade_flow_batches_total", "Agent batches accepted.", nil, nil)
	descObs      = prometheus.NewDesc("palisade_flow_observations_total", "Observations ingested (duplicates excluded).", nil, nil)
	descDups     = prometheus.NewDesc("palisade_flow_observations_duplicate_total", "Observations received again and dropped.", nil, nil)
	descStored   = prometheus.NewDesc("palisade_flows_stored_total", "Flows written to the flow store.", nil, nil)
	descPending  = prometheus.NewDesc("palisade_flows_pending", "Flows waiting for their window to close.", nil, nil)
	descRefused  = prometheus.NewDesc("palisade_flow_batches_refused_total", "Agent batches refused, by reason.", []string{"reason"}, nil)
	descSearches = prometheus.NewDesc("palisade_flow_searches_total", "Flow searches.", nil, nil)
	descAgents   = prometheus.NewDesc("palisade_agents", "Node agents known to the server.", nil, nil)
	descWorkload = prometheus.NewDesc("palisade_workloads", "Workloads in the inventory.", nil, nil)
	descImages   = prometheus.NewDesc("palisade_images", "Container images known to the scanner.", nil, nil)
)

// flowCollector reads the domain counters at scrape time.
type flowCollector struct{ s *Server }

func (c flowCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBatches, descObs, descDups, descStored, descPending, descRefused, descSearches, descAgents, descWorkload, descImages} {
		ch <- d
	}
}

func (c flowCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	if s.Flows != nil {
		m := s.Flows.Metrics()
		counter(descBatches, m.Batches)
		counter(descObs, m.Observations)
		counter(descDups, m.Duplicates)
		counter(descStored, m.FlowsStored)
		gauge(descPending, m.PendingFlows)
		counter(descRefused, m.RefusedMalformed, "malformed")
		counter(descRefused, m.RefusedOversized, "oversized")
		counter(descRefused, m.RefusedUnauthenticated, "unauthenticated")
		counter(descSearches, m.Searches)
		gauge(descAgents, s.Flows.Agents.Len())
	}
	if s.Inventory != nil {
		gauge(descWorkload, s.Inventory.Len())
	}
	if s.Vuln != nil {
		gauge(descImages, len(s.Vuln.Images()))
	}
}

func init() { addRoutes((*Server).metricsRoutes) }

// metricsRoutes: GET /metrics in the Prometheus format, for a token with
// the metrics-reader role (or an admin).
func (s *Server) metricsRoutes() []Route {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return []Route{{Method: "GET", Pattern: "/metrics", Perm: auth.MetricsScrape, Handler: h.ServeHTTP}}
}
