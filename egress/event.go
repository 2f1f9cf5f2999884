package egress

import (
	"net/netip"
	"time"
)

// Event records one decision and, for allowed traffic, what it carried.
// It never holds bodies, credentials, cookies or other header values.
type Event struct {
	Time     time.Time     `json:"time"`
	Policy   string        `json:"policy"`
	Tenant   string        `json:"tenant,omitempty"`
	Cell     string        `json:"cell,omitempty"`
	Method   string        `json:"method"` // CONNECT, GET, POST, …, or "" when no request could be read
	Host     string        `json:"host"`
	Port     uint16        `json:"port"`
	IP       netip.Addr    `json:"ip,omitzero"` // the address dialled
	Action   Action        `json:"action"`      // allow or deny
	Rule     string        `json:"rule,omitempty"`
	Asked    string        `json:"asked,omitempty"` // "", "once", "remember", "denied" or "timeout"
	Reason   string        `json:"reason,omitempty"`
	Status   int           `json:"status,omitempty"` // HTTP status sent to the client
	BytesUp  int64         `json:"bytes_up"`         // client → upstream
	BytesDn  int64         `json:"bytes_down"`       // upstream → client
	Duration time.Duration `json:"duration_ns"`
}

// AskRequest is what an approver is asked about.
type AskRequest struct {
	Client Client
	Policy string
	Method string
	Host   string
	Port   uint16
	Addrs  []netip.Addr
	Rule   string
}

// Answer is an approver's decision. Remember adds an in-memory allow rule
// for the host and port to the policy, for the life of the Proxy.
type Answer struct {
	Allow    bool
	Remember bool
}
