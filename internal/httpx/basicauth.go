package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// GuardAdmin puts an operator's handler (River UI) behind three checks, in
// this order:
//
//   - cross-origin protection (http.CrossOriginProtection): a browser
//     request that would change something (POST and the like) and comes from
//     another site is refused with 403, so a page an operator visits cannot
//     cancel or delete jobs with the browser's saved credentials;
//   - the limit on failed password guesses per client address: an address
//     over it is answered 429 before its password is compared, the right
//     password included, or the answers would go on telling guesses apart;
//   - basic auth with user and password.
func GuardAdmin(realm, user, password string, limit AuthLimit, next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusForbidden, "Cross-origin requests may not change anything here.")
	}))
	return cop.Handler(basicAuth(realm, user, password, newFailureLimiter(limit), next))
}

// basicAuth lets through requests with the operator's user and password.
// Both are compared as SHA-256 digests in constant time, so neither their
// content nor their length shows in the response time.
func basicAuth(realm, user, password string, failures *failureLimiter, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	challenge := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
		writeProblem(w, r, http.StatusUnauthorized, "Operator credentials are required.")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok {
			challenge(w, r) // no guess made, none counted: a browser asks first
			return
		}
		refund, retryAfter, allowed := failures.take(clientAddrOf(r))
		if !allowed {
			tooManyFailures(w, r, retryAfter)
			return
		}
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if userOK&passOK != 1 {
			challenge(w, r)
			return
		}
		refund()
		next.ServeHTTP(w, r)
	})
}
