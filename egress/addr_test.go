package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr    string
		special bool
		want    string // substring of Reason
	}{
		// Ordinary public addresses.
		{"93.184.216.34", false, ""},
		{"8.8.8.8", false, ""},
		{"2606:4700::1111", false, ""},
		{"::ffff:8.8.8.8", false, "IPv4-mapped 8.8.8.8"},

		// Every range of openclaw-integration.md §3.3.
		{"127.0.0.1", true, "loopback"},
		{"127.255.255.254", true, "loopback"},
		{"::1", true, "loopback"},
		{"0.0.0.0", true, "this network"},
		{"0.1.2.3", true, "this network"},
		{"::", true, "unspecified"},
		{"10.1.2.3", true, "RFC 1918"},
		{"172.16.0.1", true, "RFC 1918"},
		{"172.31.255.255", true, "RFC 1918"},
		{"192.168.1.1", true, "RFC 1918"},
		{"169.254.1.1", true, "link-local"},
		{"fe80::1", true, "link-local"},
		{"169.254.169.254", true, "metadata"},
		{"100.64.0.1", true, "carrier-grade NAT"},
		{"198.18.0.1", true, "benchmarking"},
		{"198.19.255.255", true, "benchmarking"},
		{"2001:2::1", true, "benchmarking"},
		{"192.0.0.8", true, "IETF protocol"},
		{"192.0.2.1", true, "documentation"},
		{"198.51.100.1", true, "documentation"},
		{"203.0.113.1", true, "documentation"},
		{"2001:db8::1", true, "documentation"},
		{"224.0.0.1", true, "multicast"},
		{"239.255.255.250", true, "multicast"},
		{"ff02::1", true, "multicast"},
		{"240.0.0.1", true, "reserved"},
		{"255.255.255.255", true, "reserved"},
		{"fc00::1", true, "ULA"},
		{"fd12:3456::1", true, "ULA"},
		{"fec0::1", true, "site-local"},
		{"100::1", true, "discard"},
		{"2001:20::1", true, "ORCHIDv2"},
		{"64:ff9b::808:808", true, "NAT64"},
		{"64:ff9b:1::1", true, "NAT64"},
		{"2002:808:808::1", true, "6to4"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true, "Teredo"},
		{"::8.8.8.8", true, "IPv4-compatible"},
		{"::fffd:7f00:1", true, "outside IPv6 global unicast"}, // found by FuzzProxyRequest
		{"4000::1", true, "outside IPv6 global unicast"},

		// Cloud metadata and host services.
		{"fd00:ec2::254", true, "AWS IPv6 IMDS"},
		{"169.254.170.2", true, "ECS"},
		{"100.100.100.200", true, "Alibaba"},
		{"168.63.129.16", true, "Azure"},

		// Encodings of 127.0.0.1.
		{"::ffff:127.0.0.1", true, "IPv4-mapped 127.0.0.1, loopback"},
		{"::127.0.0.1", true, "IPv4-compatible 127.0.0.1, loopback"},
		{"64:ff9b::7f00:1", true, "NAT64 127.0.0.1, loopback"},
		{"64:ff9b:1::7f00:1", true, "local NAT64 127.0.0.1, loopback"},
		{"2002:7f00:1::", true, "6to4 127.0.0.1, loopback"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", true, "Teredo client 127.0.0.1, loopback"},
		{"fe80::5efe:7f00:1", true, "ISATAP 127.0.0.1, loopback"},
		// Encodings of 10.1.2.3.
		{"::ffff:10.1.2.3", true, "10.1.2.3, private"},
		{"::ffff:a01:203", true, "10.1.2.3, private"},
		{"64:ff9b::a01:203", true, "NAT64 10.1.2.3, private"},
		{"2002:a01:203::1", true, "6to4 10.1.2.3, private"},
		{"2001:0:4136:e378:8000:63bf:f5fe:fdfc", true, "Teredo client 10.1.2.3, private"},
		{"2001:0:a01:203::f7f7:f7f7", true, "Teredo server 10.1.2.3, private"},
		// Encodings of 169.254.169.254.
		{"::ffff:169.254.169.254", true, "IPv4-mapped 169.254.169.254, cloud metadata"},
		{"64:ff9b::a9fe:a9fe", true, "NAT64 169.254.169.254, cloud metadata"},
		{"2002:a9fe:a9fe::", true, "6to4 169.254.169.254, cloud metadata"},
		{"2001:0:4136:e378:8000:63bf:5601:5601", true, "Teredo client 169.254.169.254, cloud metadata"},
		{"::169.254.169.254", true, "IPv4-compatible 169.254.169.254, cloud metadata"},
		// fd00:ec2::254 with a zone is still itself.
		{"fd00:ec2::254%eth0", true, "AWS IPv6 IMDS"},
	}
	for _, tt := range tests {
		c := Classify(netip.MustParseAddr(tt.addr))
		if c.Special() != tt.special {
			t.Errorf("Classify(%s).Special() = %v, want %v (%s)", tt.addr, c.Special(), tt.special, c.Reason())
		}
		if !strings.Contains(c.Reason(), tt.want) {
			t.Errorf("Classify(%s).Reason() = %q, want it to contain %q", tt.addr, c.Reason(), tt.want)
		}
	}
}

// TestBlockedRangesComplete checks every range the OpenClaw docs list is
// blocked, by its first and last address.
func TestBlockedRangesComplete(t *testing.T) {
	for _, s := range strings.Fields(`127.0.0.0/8 ::1/128 0.0.0.0/8 ::/128 10.0.0.0/8 172.16.0.0/12
		192.168.0.0/16 169.254.0.0/16 fe80::/10 169.254.169.254/32 100.64.0.0/10 198.18.0.0/15 2001:2::/48
		192.0.0.0/24 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 2001:db8::/32 224.0.0.0/4 ff00::/8
		240.0.0.0/4 fc00::/7 fec0::/10 100::/64 2001:20::/28 64:ff9b::/96 64:ff9b:1::/48 2002::/16
		2001::/32 ::/96 ::ffff:0:0/96 fd00:ec2::254/128`) {
		p := netip.MustParsePrefix(s)
		first := p.Addr()
		last := lastAddr(p)
		for _, a := range []netip.Addr{first, last} {
			if !Classify(a).Special() {
				t.Errorf("%s (in %s) is not blocked", a, p)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestBlockedNames(t *testing.T) {
	for _, h := range []string{"localhost", "foo.localhost", "a.b.localhost", "localhost.localdomain", "metadata.google.internal", "metadata", "instance-data"} {
		if blockedName(h) == "" {
			t.Errorf("blockedName(%q) = \"\", want a reason", h)
		}
	}
	for _, h := range []string{"notlocalhost", "localhost.example.com", "api.openai.com"} {
		if r := blockedName(h); r != "" {
			t.Errorf("blockedName(%q) = %q, want \"\"", h, r)
		}
	}
}
