// Package providertest holds what the metric providers' tests share.
package providertest

import (
	"strings"
	"testing"

	"canopy.dev/canopy/internal/analysis/providers"
)

// Foreign is the word the test servers put in answers that are not their API's: an error
// must never quote it, since an address may be any service the operator reaches.
const Foreign = "secret"

// CheckQuery fails t unless a Query's answer is want with no error (wantKind empty), or an
// error of wantKind whose message contains wantMsg and does not quote Foreign.
func CheckQuery(t testing.TB, got float64, err error, want float64, wantKind providers.Kind, wantMsg string) {
	t.Helper()
	if wantKind == "" {
		if err != nil || got != want {
			t.Fatalf("Query = %v, %v; want %v", got, err, want)
		}
		return
	}
	if providers.KindOf(err) != wantKind || !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("Query error = %v (%s), want %s containing %q", err, providers.KindOf(err), wantKind, wantMsg)
	}
	if strings.Contains(err.Error(), Foreign) {
		t.Errorf("the error quotes an answer that is not the provider's: %v", err)
	}
}
