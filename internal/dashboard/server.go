package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

//go:embed static
var static embed.FS

// Options configure a Server.
type Options struct {
	// Client is the user's (kubeconfig, impersonation and all).
	Client client.WithWatch
	Views  Views
	// Namespace limits the dashboard to one namespace; "" watches every namespace.
	Namespace string
	// PrometheusURL, when set, is where the weight history is read from
	// (canopy_canary_weight); else the dashboard keeps it from the watch.
	PrometheusURL string
	// PrometheusWindow is how far back the chart reads Prometheus (default 1h).
	PrometheusWindow time.Duration
	// HistorySize bounds the weight changes and measurements kept per Canary (default 500).
	HistorySize int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Server is the dashboard's HTTP server.
type Server struct {
	opts  Options
	cache *cache
	prom  *prometheus
	// token is this run's secret, which the page sends back with every request it makes
	// (a page of another origin cannot read it: the CSRF defence).
	token string
	page  *template.Template
	// hosts are the Host header values this server answers (the DNS-rebinding defence).
	hosts []string
}

// New makes a Server; Serve starts its watches.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = 500
	}
	if opts.PrometheusWindow <= 0 {
		opts.PrometheusWindow = time.Hour
	}
	s := &Server{opts: opts, cache: newCache(opts.Client, opts.Namespace, opts.HistorySize, opts.Now)}
	if opts.PrometheusURL != "" {
		p, err := newPrometheus(opts.PrometheusURL, opts.PrometheusWindow)
		if err != nil {
			return nil, err
		}
		s.prom = p
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	s.token = hex.EncodeToString(b)
	page, err := template.ParseFS(static, "static/index.html")
	if err != nil {
		return nil, err
	}
	s.page = page
	return s, nil
}

// Serve answers on ln until ctx ends. It waits (a few seconds at most) for the first list
// of each kind before it answers, so that the first page shows the cluster.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.hosts = allowedHosts(ln.Addr())
	s.cache.run(ctx)
	s.cache.synced(ctx, 10*time.Second)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// allowedHosts are the names a browser uses for the bound address: the address itself
// and, on loopback, localhost.
func allowedHosts(a net.Addr) []string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return []string{a.String()}
	}
	port := strconv.Itoa(tcp.Port)
	hosts := []string{net.JoinHostPort(tcp.IP.String(), port)}
	if tcp.IP.IsLoopback() {
		hosts = append(hosts, net.JoinHostPort("localhost", port))
	}
	return hosts
}

// Handler is the dashboard's routes behind the Host and Origin checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /api/canaries", s.listCanaries)
	mux.HandleFunc("GET /api/canaries/{ns}/{name}", s.canaryDetail)
	mux.HandleFunc("GET /api/canaries/{ns}/{name}/generated", s.generated(kindCanary))
	mux.HandleFunc("GET /api/canaries/{ns}/{name}/generated/{index}", s.generatedYAML(kindCanary))
	mux.HandleFunc("POST /api/canaries/{ns}/{name}/{action}", s.request(kindCanary))
	mux.HandleFunc("GET /api/meshpolicies", s.listPolicies)
	mux.HandleFunc("GET /api/meshpolicies/{ns}/{name}/generated", s.generated(kindMeshPolicy))
	mux.HandleFunc("GET /api/meshpolicies/{ns}/{name}/generated/{index}", s.generatedYAML(kindMeshPolicy))
	mux.HandleFunc("POST /api/meshpolicies/{ns}/{name}/{action}", s.request(kindMeshPolicy))
	mux.HandleFunc("GET /api/stream", s.stream)
	return s.guard(mux)
}

// guard refuses requests for another host name (a DNS-rebinding page) and writes from
// another origin or without this run's token (CSRF), and sets headers that keep the page
// from being framed or loading anything from elsewhere.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hosts != nil && !slices.Contains(s.hosts, r.Host) {
			http.Error(w, fmt.Sprintf("refused: this dashboard answers only as %s (Host %q)", strings.Join(s.hosts, " or "), r.Host), http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			origin := r.Header.Get("Origin")
			if origin == "" || !slices.ContainsFunc(s.hosts, func(h string) bool { return origin == "http://"+h }) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("refused: a request from origin %q; the dashboard takes requests from its own page only", origin))
				return
			}
			if r.Header.Get("X-Canopy-Token") != s.token {
				writeError(w, http.StatusForbidden, "refused: the request lacks this dashboard's token; reload the page")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	ns := s.opts.Namespace
	_ = s.page.Execute(w, map[string]any{"Token": s.token, "Namespace": ns, "Actions": strings.Join(s.opts.Views.Actions(), ",")})
}

func (s *Server) listCanaries(w http.ResponseWriter, _ *http.Request) {
	now := s.opts.Now()
	rows := []CanaryRow{}
	for _, c := range s.cache.listCanaries() {
		rows = append(rows, s.opts.Views.Row(c, now))
	}
	writeJSON(w, map[string]any{"canaries": rows, "errors": s.cache.errors(), "namespace": s.opts.Namespace})
}

func (s *Server) canaryDetail(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	c := s.cache.canary(ns, name)
	if c == nil {
		writeError(w, http.StatusNotFound, s.notFound(kindCanary, ns, name))
		return
	}
	now := s.opts.Now()
	evs, evErr := s.cache.eventsOf(c)
	d := s.opts.Views.Detail(c, evs, evErr, now)
	d.History = s.cache.historyOf(ns + "/" + name)
	if s.prom != nil {
		points, err := s.prom.weights(r.Context(), ns, name, now)
		if err != nil {
			d.History.Error = err.Error()
		} else if len(points) > 0 {
			d.History.Source, d.History.Weight = "prometheus", points
		}
	}
	writeJSON(w, d)
}

func (s *Server) notFound(kind, ns, name string) string {
	if msg := s.cache.errors()[kind]; msg != "" {
		return msg
	}
	return fmt.Sprintf("no %s %s in namespace %s", kind, name, ns)
}

func (s *Server) object(kind, ns, name string) client.Object {
	if kind == kindCanary {
		if c := s.cache.canary(ns, name); c != nil {
			return c.DeepCopy()
		}
		return nil
	}
	if p := s.cache.policy(ns, name); p != nil {
		return p.DeepCopy()
	}
	return nil
}

// generated lists what canopy generates for the object; it is rendered on request (a
// person opening the list), reading the cluster as kubectl canopy render would.
func (s *Server) generated(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		objs, ok := s.render(w, r, kind)
		if !ok {
			return
		}
		type ref struct {
			GeneratedObject
			Index int `json:"index"`
		}
		out := make([]ref, 0, len(objs))
		for i, o := range objs {
			out = append(out, ref{GeneratedObject: o, Index: i})
		}
		writeJSON(w, map[string]any{"objects": out})
	}
}

func (s *Server) generatedYAML(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		objs, ok := s.render(w, r, kind)
		if !ok {
			return
		}
		i, err := strconv.Atoi(r.PathValue("index"))
		if err != nil || i < 0 || i >= len(objs) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no generated object %q: there are %d", r.PathValue("index"), len(objs)))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(objs[i].YAML))
	}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, kind string) ([]GeneratedObject, bool) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	obj := s.object(kind, ns, name)
	if obj == nil {
		writeError(w, http.StatusNotFound, s.notFound(kind, ns, name))
		return nil, false
	}
	objs, err := s.opts.Views.Generated(r.Context(), obj)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return nil, false
	}
	return objs, true
}

// request sends a manual control as the user; the apiserver's refusal is shown as it is.
// A MeshPolicy takes promote and abort (its rollout's), a Canary every action.
func (s *Server) request(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, name, action := r.PathValue("ns"), r.PathValue("name"), r.PathValue("action")
		actions := s.opts.Views.Actions()
		var obj client.Object = &meshv1.Canary{}
		if kind == kindMeshPolicy {
			actions, obj = policyActions, &meshv1.MeshPolicy{}
		}
		if !slices.Contains(actions, action) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q for a %s: use one of %s", action, kind, strings.Join(actions, ", ")))
			return
		}
		obj.SetNamespace(ns)
		obj.SetName(name)
		value, err := s.opts.Views.Request(r.Context(), obj, action)
		if err != nil {
			writeError(w, statusOf(err), err.Error())
			return
		}
		ref := name // as the CLI says it: reviews, meshpolicy/reviews
		if kind == kindMeshPolicy {
			ref = "meshpolicy/" + name
		}
		writeJSON(w, map[string]string{"message": fmt.Sprintf("%s requested for %s/%s (%s)", action, ns, ref, value), "value": value})
	}
}

// policyActions are the manual controls of a MeshPolicy's rollout.
var policyActions = []string{"promote", "abort"}

// statusOf is the apiserver's HTTP status for its errors, else 500.
func statusOf(err error) int {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Code >= 400 {
		return int(st.Status().Code)
	}
	return http.StatusInternalServerError
}

func (s *Server) listPolicies(w http.ResponseWriter, _ *http.Request) {
	out := []PolicyView{}
	for _, p := range s.cache.listPolicies() {
		out = append(out, policyView(p, s.opts.Now()))
	}
	writeJSON(w, map[string]any{"policies": out, "errors": s.cache.errors(), "namespace": s.opts.Namespace})
}

// stream tells the tab, as server-sent events, that the cache changed: the tab then reads
// the view it shows from this server, never from the apiserver.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	ch, unsubscribe := s.cache.subscribe()
	defer unsubscribe()
	_, _ = fmt.Fprint(w, "retry: 2000\nevent: hello\ndata: {}\n\n")
	fl.Flush()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
			_, _ = fmt.Fprint(w, "event: changed\ndata: {}\n\n")
		case <-keepalive.C:
			_, _ = fmt.Fprint(w, ": keepalive\n\n")
		}
		fl.Flush()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
