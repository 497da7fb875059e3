package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"go.uber.org/zap"

	"github.com/wsedge/wsedge/upstream"
)

type routeKey struct{}

// newHTTPProxy returns the reverse proxy for requests that are not
// WebSocket upgrades. They go to the same sticky backend as the client's
// WebSocket would, because long-polling transports (Socket.IO, SockJS) keep
// their session on one server. Bodies stream both ways and responses are
// flushed as they come (server-sent events, long polls).
func (s *Server) newHTTPProxy(transport http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rt := pr.In.Context().Value(routeKey{}).(route)
			pr.Out.URL.Scheme = "http"
			if s.router.table().cfg.UpstreamTLS != nil {
				pr.Out.URL.Scheme = "https"
			}
			pr.Out.URL.Host = rt.backend
			pr.Out.Host = pr.In.Host
			setForwarded(pr.Out.Header, pr.In, rt)
			pr.Out.Header.Set("X-Request-ID", rt.requestID)
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(res *http.Response) error {
			rt := res.Request.Context().Value(routeKey{}).(route)
			if rt.setCookie != "" {
				res.Header.Add("Set-Cookie", s.router.table().routeCookie(rt.setCookie))
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := http.StatusBadGateway
			var ne net.Error
			switch kind := upstream.LocalFailure(err); {
			case kind != "":
				s.localError(kind, err)
				status = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", retryAfter)
			case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
				status = http.StatusGatewayTimeout
			}
			if r.Context().Err() == nil {
				http.Error(w, http.StatusText(status), status)
			}
			s.log.Info("http request failed", zap.String("remote", r.RemoteAddr),
				zap.String("path", r.URL.Path), zap.Int("status", status), zap.Error(err))
		},
		ErrorLog: zap.NewStdLog(s.log),
	}
}

// newTransport pools connections to backends for plain HTTP. There is no
// response timeout: long polls and event streams are legitimate.
func newTransport(cfg Config) *http.Transport {
	d := &net.Dialer{Timeout: cfg.HandshakeTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       cfg.UpstreamTLS,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.HandshakeTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request, rt route) {
	// The proxy switches protocols for WebSockets only, on its own terms:
	// without Upgrade the reverse proxy turns a backend's 101 into an error
	// rather than a tunnel no rule reads.
	r.Header.Del("Upgrade")
	// A backend may answer while the request body is still coming (a
	// streaming echo, an upload with progress); HTTP/1 allows it, net/http
	// only when asked.
	http.NewResponseController(w).EnableFullDuplex()
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
}
