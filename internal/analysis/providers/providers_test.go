package providers

import (
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCredentialsFromSecret(t *testing.T) {
	secret := func(kv ...string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "prom"}, Data: map[string][]byte{}}
		for i := 0; i < len(kv); i += 2 {
			s.Data[kv[i]] = []byte(kv[i+1])
		}
		return s
	}
	tests := []struct {
		name    string
		secret  *corev1.Secret
		want    Credentials
		wantErr bool
	}{
		{name: "token trimmed", secret: secret("token", "abc\n"), want: Credentials{BearerToken: "abc"}},
		{name: "basic", secret: secret("username", "u", "password", " p \n"), want: Credentials{Username: "u", Password: " p "}},
		{name: "CA only", secret: secret("ca.crt", "PEM"), want: Credentials{CA: []byte("PEM")}},
		{name: "token and CA", secret: secret("token", "abc", "ca.crt", "PEM"), want: Credentials{BearerToken: "abc", CA: []byte("PEM")}},
		{name: "API keys", secret: secret("api-key", "a\n", "application-key", "b"), want: Credentials{APIKey: "a", ApplicationKey: "b"}},
		{name: "both kinds", secret: secret("token", "abc", "username", "u", "password", "p"), wantErr: true},
		{name: "username alone", secret: secret("username", "u"), wantErr: true},
		{name: "empty token", secret: secret("token", "\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CredentialsFromSecret(tt.secret)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", Errorf(Timeout, "slow"))
	if KindOf(err) != Timeout {
		t.Errorf("KindOf(wrapped Timeout) = %s", KindOf(err))
	}
	if KindOf(errors.New("plain")) != Other {
		t.Errorf("KindOf(plain) = %s", KindOf(errors.New("plain")))
	}
}
