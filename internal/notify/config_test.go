package notify

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfigDefaultsAndOverrides(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
events: [started, promoted, failed]
rateLimit: {burst: 2, every: 30s}
dedupWindow: 5m
channels:
- name: ops
  type: slack
  url: https://hooks.slack.com/services/T0/B0/secret
- name: audit
  type: webhook
  url: https://audit.example.com/canopy
  events: [step]
  namespaces: [shop]
  timeout: 3s
  retries: 0
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ops, audit := n.channels[0], n.channels[1]
	if got := kindList2(ops.events); got != "started,promoted,failed" {
		t.Errorf("ops events %s, want the top-level ones", got)
	}
	if got := kindList2(audit.events); got != "step" {
		t.Errorf("audit events %s, want its own", got)
	}
	if ops.perCanary.Burst != 2 || ops.perCanary.Every.Duration != 30*time.Second {
		t.Errorf("ops rate limit %+v, want the top-level one", ops.perCanary)
	}
	if ops.dedup != 5*time.Minute || cap(ops.queue) != defaultQueueSize || ops.retries != defaultRetries {
		t.Errorf("ops defaults: dedup %s, queue %d, retries %d", ops.dedup, cap(ops.queue), ops.retries)
	}
	if audit.retries != 0 || audit.timeout != 3*time.Second {
		t.Errorf("audit retries %d timeout %s, want 0 and 3s", audit.retries, audit.timeout)
	}
}

func kindList2(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

func TestParseConfigNamesTheBadField(t *testing.T) {
	const ok = "- {name: a, type: slack, url: 'https://hooks.slack.com/services/x'}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no channels", "events: [started]", "channels: at least one channel is required"},
		{"unknown field", "chanels: []", `unknown field "chanels"`},
		{"bad event", "events: [started, exploded]\nchannels:\n" + ok, `events[1]: "exploded" is not one of started, step, paused, promoted, rolledBack, failed`},
		{"bad type", "channels:\n- {name: a, type: discord, url: 'https://x.example'}", `channels[0].type: "discord" is not one of slack, teams, webhook`},
		{"no url", "channels:\n- {name: a, type: slack}", "channels[0].url: required"},
		{"bad scheme", "channels:\n- {name: a, type: slack, url: 'ftp://hooks.example/secret-token'}", "channels[0].url: not an http or https URL with a host"},
		{"no name", "channels:\n- {type: slack, url: 'https://x.example'}", "channels[0].name: required"},
		{"duplicate name", "channels:\n" + ok + ok, `channels[1].name: "a" is used by another channel`},
		{"channel event", "channels:\n- {name: a, type: teams, url: 'https://x.example', events: [nope]}", `channels[0].events[0]: "nope"`},
		{"zero burst", "rateLimit: {burst: 0, every: 1m}\nchannels:\n" + ok, "rateLimit.burst: 0, must be at least 1"},
		{"zero every", "globalRateLimit: {burst: 1, every: 0s}\nchannels:\n" + ok, "globalRateLimit.every: 0s is not a positive duration"},
		{"bad duration", "dedupWindow: soon\nchannels:\n" + ok, "time: invalid duration"},
		{"negative queue", "queueSize: -1\nchannels:\n" + ok, "queueSize: -1 is negative"},
		{"retries", "channels:\n- {name: a, type: slack, url: 'https://x.example', retries: 11}", "channels[0].retries: 11 is not within 0..10"},
		{"timeout", "channels:\n- {name: a, type: slack, url: 'https://x.example', timeout: 0s}", "channels[0].timeout: 0s is not a positive duration"},
		{"channel rate", "channels:\n- {name: a, type: slack, url: 'https://x.example', rateLimit: {burst: 1}}", "channels[0].rateLimit.every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Fatalf("the error repeats the secret URL: %v", err)
			}
		})
	}
}

func TestNewRefusesABadAllowedCIDR(t *testing.T) {
	cfg := &Config{AllowedCIDRs: []string{"not-a-cidr"}, Channels: []Channel{{Name: "a", Type: Slack, URL: "https://x.example"}}}
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "allowedCIDRs") {
		t.Fatalf("error %v, want one naming allowedCIDRs", err)
	}
}
