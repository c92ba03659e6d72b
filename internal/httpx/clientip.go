package httpx

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddress records the request's client address, for the access line
// and for the limit on failed authentications. It runs inside observe (whose
// requestInfo it fills) and outside the router, so 404 and 405 lines carry
// the address too.
func clientAddress(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoFrom(r.Context())
		info.clientAddr, info.clientIP = clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
		next.ServeHTTP(w, r)
	})
}

// clientIP is the address of the connection's peer or, when the peer is a
// trusted proxy, the rightmost X-Forwarded-For address that is not itself a
// trusted proxy: every proxy appends the address it received the request
// from, so entries left of the first untrusted one are the client's own
// claims and may be forged. A header that is malformed where it is read
// counts for nothing: the peer is the client. The string is what the access
// line shows; it is the peer's raw address when that is not an IP (a Unix
// socket, say), and the address is then invalid.
func clientIP(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) (netip.Addr, string) {
	peer, ok := peerAddr(remoteAddr)
	if !ok {
		if remoteAddr == "" {
			remoteAddr = "unknown"
		}
		return netip.Addr{}, remoteAddr
	}
	if len(forwardedFor) == 0 || !isTrusted(peer, trusted) {
		return peer, peer.String()
	}
	client := peer
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		entries := strings.Split(forwardedFor[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(entries[j]))
			if err != nil || a.Zone() != "" {
				return peer, peer.String()
			}
			client = a.Unmap()
			if !isTrusted(client, trusted) {
				return client, client.String()
			}
		}
	}
	// Every hop is a trusted proxy: the leftmost is as far back as the
	// header can be believed.
	return client, client.String()
}

// peerAddr parses net/http's RemoteAddr ("ip:port").
func peerAddr(remoteAddr string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddrOf returns the client address clientAddress recorded, or the
// peer's when the request did not pass through it (a handler under test).
func clientAddrOf(r *http.Request) netip.Addr {
	if info := infoFrom(r.Context()); info.clientIP != "" {
		return info.clientAddr
	}
	a, _ := peerAddr(r.RemoteAddr)
	return a
}
