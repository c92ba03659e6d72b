package httpx

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ff::/48")}
	tests := []struct {
		name         string
		remoteAddr   string
		forwardedFor []string
		trusted      []netip.Prefix
		want         string
		wantValid    bool
	}{
		{name: "peer, no header", remoteAddr: "198.51.100.7:5000", trusted: trusted, want: "198.51.100.7", wantValid: true},
		{
			name: "untrusted peer: header ignored", remoteAddr: "198.51.100.7:5000", forwardedFor: []string{"203.0.113.9"},
			trusted: trusted, want: "198.51.100.7", wantValid: true,
		},
		{
			name: "no trusted proxies: header ignored", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{"203.0.113.9"},
			want: "10.0.0.2", wantValid: true,
		},
		{
			name: "trusted peer: client from the header", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{"203.0.113.9"},
			trusted: trusted, want: "203.0.113.9", wantValid: true,
		},
		{
			name: "trusted peer without the header", remoteAddr: "10.0.0.2:5000",
			trusted: trusted, want: "10.0.0.2", wantValid: true,
		},
		{
			name: "forged entries left of the client are ignored", remoteAddr: "10.0.0.2:5000",
			forwardedFor: []string{"1.1.1.1, not-an-ip, 203.0.113.9, 10.1.1.1"},
			trusted:      trusted, want: "203.0.113.9", wantValid: true,
		},
		{
			name: "several header fields read as one list", remoteAddr: "10.0.0.2:5000",
			forwardedFor: []string{"192.0.2.1, 203.0.113.9", "10.3.3.3"},
			trusted:      trusted, want: "203.0.113.9", wantValid: true,
		},
		{
			name: "malformed where it is read: the peer", remoteAddr: "10.0.0.2:5000",
			forwardedFor: []string{"203.0.113.9, 203.0.113.10:443"},
			trusted:      trusted, want: "10.0.0.2", wantValid: true,
		},
		{
			name: "empty entry: the peer", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{"203.0.113.9,"},
			trusted: trusted, want: "10.0.0.2", wantValid: true,
		},
		{
			name: "empty header: the peer", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{""},
			trusted: trusted, want: "10.0.0.2", wantValid: true,
		},
		{
			name: "zoned address: the peer", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{"fe80::1%eth0"},
			trusted: trusted, want: "10.0.0.2", wantValid: true,
		},
		{
			name: "every hop trusted: the leftmost", remoteAddr: "10.0.0.2:5000", forwardedFor: []string{"10.9.9.9, 10.8.8.8"},
			trusted: trusted, want: "10.9.9.9", wantValid: true,
		},
		{
			name: "IPv6 proxy and client", remoteAddr: "[2001:db8:ff::1]:443", forwardedFor: []string{"2001:db8:1::5"},
			trusted: trusted, want: "2001:db8:1::5", wantValid: true,
		},
		{
			name: "IPv4-mapped peer is trusted as IPv4", remoteAddr: "[::ffff:10.0.0.2]:5000",
			forwardedFor: []string{"::ffff:203.0.113.9"}, trusted: trusted, want: "203.0.113.9", wantValid: true,
		},
		{name: "not an IP peer", remoteAddr: "@", forwardedFor: []string{"203.0.113.9"}, trusted: trusted, want: "@"},
		{name: "no peer at all", remoteAddr: "", trusted: trusted, want: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, shown := clientIP(tt.remoteAddr, tt.forwardedFor, tt.trusted)
			require.Equal(t, tt.want, shown)
			require.Equal(t, tt.wantValid, addr.IsValid())
			if tt.wantValid {
				require.Equal(t, tt.want, addr.String())
			}
		})
	}
}
