package egress

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// special is a range of addresses that is never reached through the proxy
// unless an allow rule names a CIDR containing the address.
type special struct {
	prefix netip.Prefix
	name   string
}

// metadataAddrs are cloud instance-metadata (and neighbouring host service)
// endpoints. They are checked before the broader ranges so that the reason
// names them.
var metadataAddrs = []special{
	{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata service (AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle)"},
	{netip.MustParsePrefix("169.254.170.2/32"), "cloud metadata service (AWS ECS task metadata)"},
	{netip.MustParsePrefix("169.254.169.253/32"), "cloud host service (AWS VPC DNS)"},
	{netip.MustParsePrefix("169.254.169.123/32"), "cloud host service (AWS time sync)"},
	{netip.MustParsePrefix("169.254.0.23/32"), "cloud metadata service (Tencent Cloud)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata service (Alibaba Cloud)"},
	{netip.MustParsePrefix("168.63.129.16/32"), "cloud host service (Azure WireServer)"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata service (AWS IPv6 IMDS)"},
	{netip.MustParsePrefix("fd00:ec2::253/128"), "cloud host service (AWS IPv6 VPC DNS)"},
	{netip.MustParsePrefix("fd00:ec2::123/128"), "cloud host service (AWS IPv6 time sync)"},
	{netip.MustParsePrefix("fd00:ec2::23/128"), "cloud metadata service (AWS IPv6 ECS task metadata)"},
}

// specialRanges are the ranges of openclaw-integration.md §3.3 and a few more
// (6to4 relay anycast, ORCHID, the IPv6 documentation range of RFC 9637).
var specialRanges = []special{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (RFC 6890)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (TEST-NET-1)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast (RFC 7526)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (RFC 2544)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (TEST-NET-2)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (TEST-NET-3)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, incl. broadcast)"},

	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped IPv6"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6 (deprecated)"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 (RFC 6052)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215)"},
	{netip.MustParsePrefix("100::/64"), "discard-only (RFC 6666)"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking (RFC 5180)"},
	{netip.MustParsePrefix("2001:10::/28"), "ORCHID (deprecated)"},
	{netip.MustParsePrefix("2001:20::/28"), "ORCHIDv2 (RFC 7343)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation (RFC 3849)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (RFC 4380)"},
	{netip.MustParsePrefix("2002::/16"), "6to4 (RFC 3056)"},
	{netip.MustParsePrefix("3fff::/20"), "documentation (RFC 9637)"},
	{netip.MustParsePrefix("fc00::/7"), "unique local address (ULA, RFC 4193)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// BlockedRanges returns the special ranges and metadata addresses, for
// documentation and `clawhold egress check`.
func BlockedRanges() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range metadataAddrs {
		out = append(out, s.prefix)
	}
	for _, s := range specialRanges {
		out = append(out, s.prefix)
	}
	return out
}

// Class describes why an address is special. A zero Class means an
// ordinary public unicast address.
type Class struct {
	Prefix netip.Prefix // the special range containing the address
	Name   string       // e.g. "loopback"
}

// IsZero reports whether the address was not special.
func (c Class) IsZero() bool { return c.Name == "" }

// classifyOne returns the class of a alone, without looking inside it.
func classifyOne(a netip.Addr) Class {
	for _, list := range [][]special{metadataAddrs, specialRanges} {
		for _, s := range list {
			if s.prefix.Contains(a) {
				return Class{Prefix: s.prefix, Name: s.name}
			}
		}
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return Class{Prefix: globalUnicast6, Name: "outside IPv6 global unicast (2000::/3)"}
	}
	return Class{}
}

// globalUnicast6 holds every routable IPv6 unicast address; the rest of the
// IPv6 space is reserved, multicast or special.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Classified is an address with everything the classifier found in it.
type Classified struct {
	Addr     netip.Addr // as given, zone removed
	Class    Class      // class of Addr itself
	Embedded netip.Addr // an IPv4 address carried inside Addr, if any
	// EmbeddedVia names the encoding ("NAT64", "6to4", "Teredo client", …).
	EmbeddedVia   string
	EmbeddedClass Class
}

// Special reports whether the address or the IPv4 address embedded in it
// is in a special range.
func (c Classified) Special() bool {
	return !c.Class.IsZero() || !c.EmbeddedClass.IsZero()
}

// Reason describes why c is special, e.g. "64:ff9b::7f00:1 is NAT64 (RFC
// 6052) carrying 127.0.0.1, loopback".
func (c Classified) Reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", c.Addr)
	if !c.Class.IsZero() {
		fmt.Fprintf(&b, " is %s", c.Class.Name)
	}
	if c.Embedded.IsValid() {
		if c.Class.IsZero() {
			b.WriteString(" is")
		}
		fmt.Fprintf(&b, " carrying %s %s", c.EmbeddedVia, c.Embedded)
		if !c.EmbeddedClass.IsZero() {
			fmt.Fprintf(&b, ", %s", c.EmbeddedClass.Name)
		}
	}
	return b.String()
}

// Classify classifies a, decoding the IPv4 address that IPv4-mapped,
// IPv4-compatible, NAT64, 6to4, Teredo and ISATAP addresses carry.
// An IPv4-mapped address is classified as the IPv4 address it maps.
func Classify(a netip.Addr) Classified {
	a = a.WithZone("")
	if a.Is4In6() {
		v4 := a.Unmap()
		return Classified{Addr: a, Class: classifyOne(v4), Embedded: v4, EmbeddedVia: "IPv4-mapped", EmbeddedClass: classifyOne(v4)}
	}
	c := Classified{Addr: a, Class: classifyOne(a)}
	if !a.Is6() {
		return c
	}
	b := a.As16()
	last32 := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a):
		c.Embedded, c.EmbeddedVia = last32, "NAT64"
	case netip.MustParsePrefix("64:ff9b:1::/48").Contains(a):
		c.Embedded, c.EmbeddedVia = last32, "local NAT64"
	case netip.MustParsePrefix("2002::/16").Contains(a):
		c.Embedded, c.EmbeddedVia = netip.AddrFrom4([4]byte(b[2:6])), "6to4"
	case netip.MustParsePrefix("2001::/32").Contains(a):
		// Teredo: the server is in bits 32-63, the client (obfuscated by
		// inverting every bit) in the last 32. Report the worse of the two.
		var client [4]byte
		binary.BigEndian.PutUint32(client[:], ^binary.BigEndian.Uint32(b[12:16]))
		server := netip.AddrFrom4([4]byte(b[4:8]))
		c.Embedded, c.EmbeddedVia = netip.AddrFrom4(client), "Teredo client"
		if classifyOne(c.Embedded).IsZero() && !classifyOne(server).IsZero() {
			c.Embedded, c.EmbeddedVia = server, "Teredo server"
		}
	case netip.MustParsePrefix("::/96").Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		c.Embedded, c.EmbeddedVia = last32, "IPv4-compatible"
	case (b[8]|0x02) == 0x02 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe:
		// ISATAP interface identifier ::0:5efe:a.b.c.d or ::200:5efe:a.b.c.d.
		c.Embedded, c.EmbeddedVia = last32, "ISATAP"
	}
	if c.Embedded.IsValid() {
		c.EmbeddedClass = classifyOne(c.Embedded)
	}
	return c
}

// blockedNames are host names that always mean "this machine" or a cloud
// metadata service, whatever DNS says.
var blockedNames = map[string]string{
	"localhost":                    "loopback name",
	"localhost.localdomain":        "loopback name",
	"ip6-localhost":                "loopback name",
	"ip6-loopback":                 "loopback name",
	"metadata":                     "cloud metadata name",
	"metadata.google.internal":     "cloud metadata name (GCP)",
	"metadata.goog":                "cloud metadata name (GCP)",
	"instance-data":                "cloud metadata name (AWS)",
	"instance-data.ec2.internal":   "cloud metadata name (AWS)",
	"metadata.tencentyun.com":      "cloud metadata name (Tencent Cloud)",
	"metadata.platformequinix.com": "cloud metadata name (Equinix Metal)",
}

// blockedName reports why host (lower case, no trailing dot) is refused by
// name, or "".
func blockedName(host string) string {
	if r, ok := blockedNames[host]; ok {
		return r
	}
	if strings.HasSuffix(host, ".localhost") {
		return "loopback name (*.localhost)"
	}
	return ""
}
