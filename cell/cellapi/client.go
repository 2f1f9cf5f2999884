package cellapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// b64 encodes secret values on the wire: standard, padded base64, which is
// also what encoding/json uses for []byte.
var b64 = base64.StdEncoding

// defaultLookupTimeout bounds a lookup whose context has no deadline.
// `clawhold secrets provider` passes secrets.ProviderTimeout anyway.
const defaultLookupTimeout = 10 * time.Second

// LookupSecrets is the client side used inside the cell by `clawhold secrets
// provider --cell-socket PATH`: it returns a secrets.Lookup that asks the
// cell socket at socketPath (POST /v1/secrets).
//
// The returned buffers belong to the caller (secrets.ServeProvider zeroes
// them); the response buffer is zeroed before the lookup returns. Errors
// never carry a secret value.
func LookupSecrets(socketPath string) func(ctx context.Context, names []string) (map[string][]byte, error) {
	client := &http.Client{
		Transport: &http.Transport{
			// The socket is the only way out; no proxy from the environment
			// may be consulted.
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socketPath)
			},
			DisableKeepAlives:      true, // one request per provider run
			DisableCompression:     true, // keep the response in one buffer we clear
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context, names []string) (map[string][]byte, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, defaultLookupTimeout)
			defer cancel()
		}
		defer client.CloseIdleConnections()
		return lookup(ctx, client, socketPath, names)
	}
}

func lookup(ctx context.Context, client *http.Client, socketPath string, names []string) (map[string][]byte, error) {
	if len(names) == 0 {
		return map[string][]byte{}, nil
	}
	body, err := json.Marshal(secretsRequest{Names: names})
	if err != nil {
		return nil, fmt.Errorf("cellapi: encoding secrets request: %w", err)
	}
	// The host part is ignored by the unix dialer; "cell" keeps it readable.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://cell"+pathSecrets, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("cellapi: secrets request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cellapi: asking cell socket %s for %d secrets: %w", socketPath, len(names), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Error answers are clawhold's own messages and carry no values.
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = "no error message"
		}
		return nil, fmt.Errorf("cellapi: cell socket %s answered %s: %s", socketPath, resp.Status, e.Error)
	}
	raw, err := readBody(resp.Body, resp.ContentLength)
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("cellapi: reading secrets response from %s: %w", socketPath, err)
	}
	// encoding/json decodes a base64 string into a fresh []byte, straight
	// from raw when it has no escapes, so the only copies are ours.
	var out struct {
		Values map[string][]byte `json:"values"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		for _, v := range out.Values {
			clear(v)
		}
		// Not wrapped: a syntax error could quote the response.
		return nil, fmt.Errorf("cellapi: malformed secrets response from %s", socketPath)
	}
	if out.Values == nil {
		return nil, fmt.Errorf(`cellapi: secrets response from %s has no "values"`, socketPath)
	}
	asked := make(map[string]bool, len(names))
	for _, n := range names {
		asked[n] = true
	}
	for n, v := range out.Values {
		if !asked[n] {
			clear(v)
			delete(out.Values, n)
		}
	}
	return out.Values, nil
}

// readBody reads r to EOF, up to MaxBody bytes. When it has to grow its
// buffer it zeroes the old one, so no stray copy of the response is left for
// the garbage collector.
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	if contentLength > MaxBody {
		return nil, fmt.Errorf("response larger than %d bytes", MaxBody)
	}
	size := 4 << 10
	if contentLength >= 0 {
		size = int(contentLength) + 1 // +1 to see EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > MaxBody {
				clear(buf)
				return nil, fmt.Errorf("response larger than %d bytes", MaxBody)
			}
			nb := make([]byte, len(buf), min(2*cap(buf), MaxBody+1))
			copy(nb, buf)
			clear(buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if len(buf) > MaxBody {
				clear(buf)
				return nil, fmt.Errorf("response larger than %d bytes", MaxBody)
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
