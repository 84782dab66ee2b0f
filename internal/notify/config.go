package notify

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Config is the operator-wide notification configuration, read from the file given by
// --notifications-config (mount it from a Secret: webhook URLs are credentials).
type Config struct {
	// Events are the rollout events announced (default: every kind but step).
	Events []Kind `json:"events,omitempty"`
	// RateLimit bounds the messages of one Canary to one channel (default: a burst of 5,
	// then one every minute).
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// GlobalRateLimit bounds all the messages to one channel (default: a burst of 20, then one
	// every 10 seconds).
	GlobalRateLimit *RateLimit `json:"globalRateLimit,omitempty"`
	// DedupWindow drops a message identical to one sent to the same channel within it, its
	// time aside (default 10m; "0s" turns deduplication off).
	DedupWindow *metav1.Duration `json:"dedupWindow,omitempty"`
	// QueueSize bounds each channel's queue of messages waiting to be sent (default 100);
	// messages beyond it are dropped and counted.
	QueueSize int `json:"queueSize,omitempty"`
	// AllowedCIDRs lets notifications reach addresses refused by default (loopback,
	// link-local), e.g. "127.0.0.1/32" for a sidecar; see the webhook URL policy.
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
	// Channels are where messages go.
	Channels []Channel `json:"channels"`
}

// Channel is one destination.
type Channel struct {
	// Name identifies the channel in logs and metrics.
	Name string `json:"name"`
	// Type is slack (incoming webhook), teams (Workflows webhook, Adaptive Card) or webhook
	// (the event as JSON).
	Type ChannelType `json:"type"`
	// URL is the webhook's address.
	URL string `json:"url"`
	// Events overrides the top-level events for this channel.
	Events []Kind `json:"events,omitempty"`
	// Namespaces restricts the channel to Canaries of these namespaces (default: all).
	Namespaces []string `json:"namespaces,omitempty"`
	// Timeout of one attempt (default 10s).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Retries after a failed attempt (no answer, 408, 429, 5xx), with backoff (default 3).
	Retries *int `json:"retries,omitempty"`
	// RateLimit and GlobalRateLimit override the top-level ones for this channel.
	RateLimit       *RateLimit `json:"rateLimit,omitempty"`
	GlobalRateLimit *RateLimit `json:"globalRateLimit,omitempty"`
}

// RateLimit is a token bucket: Burst messages at once, then one every Every.
type RateLimit struct {
	Burst int             `json:"burst"`
	Every metav1.Duration `json:"every"`
}

// ChannelType is the format and protocol of a channel.
type ChannelType string

// The channel types.
const (
	Slack   ChannelType = "slack"
	Teams   ChannelType = "teams"
	Webhook ChannelType = "webhook"
)

var channelTypes = []ChannelType{Slack, Teams, Webhook}

// Defaults.
const (
	defaultQueueSize   = 100
	defaultRetries     = 3
	defaultDedupWindow = 10 * time.Minute
)

var (
	defaultRateLimit       = RateLimit{Burst: 5, Every: metav1.Duration{Duration: time.Minute}}
	defaultGlobalRateLimit = RateLimit{Burst: 20, Every: metav1.Duration{Duration: 10 * time.Second}}
	defaultEvents          = []Kind{Started, Paused, Promoted, RolledBack, Failed}
)

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(filepath.Clean(path)) // the operator's own flag, not user input
	if err != nil {
		return nil, fmt.Errorf("reading the notifications config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("notifications config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses YAML (or JSON), refusing unknown fields, and validates it.
func ParseConfig(data []byte) (*Config, error) {
	cfg := &Config{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate checks every field, naming the first bad one.
func (c *Config) Validate() error {
	if err := validKinds("events", c.Events); err != nil {
		return err
	}
	if err := c.RateLimit.validate("rateLimit"); err != nil {
		return err
	}
	if err := c.GlobalRateLimit.validate("globalRateLimit"); err != nil {
		return err
	}
	if c.DedupWindow != nil && c.DedupWindow.Duration < 0 {
		return fmt.Errorf("dedupWindow: %s is negative", c.DedupWindow.Duration)
	}
	if c.QueueSize < 0 {
		return fmt.Errorf("queueSize: %d is negative", c.QueueSize)
	}
	if len(c.Channels) == 0 {
		return fmt.Errorf("channels: at least one channel is required")
	}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		field := fmt.Sprintf("channels[%d]", i)
		if err := ch.validate(field); err != nil {
			return err
		}
		if names[ch.Name] {
			return fmt.Errorf("%s.name: %q is used by another channel", field, ch.Name)
		}
		names[ch.Name] = true
	}
	return nil
}

func (ch *Channel) validate(field string) error {
	if strings.TrimSpace(ch.Name) == "" {
		return fmt.Errorf("%s.name: required", field)
	}
	if !slices.Contains(channelTypes, ch.Type) {
		return fmt.Errorf("%s.type: %q is not one of slack, teams, webhook", field, ch.Type)
	}
	u, err := url.Parse(ch.URL)
	if ch.URL == "" {
		return fmt.Errorf("%s.url: required", field)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL is a secret: never repeat it in an error.
		return fmt.Errorf("%s.url: not an http or https URL with a host", field)
	}
	if err := validKinds(field+".events", ch.Events); err != nil {
		return err
	}
	if ch.Timeout != nil && ch.Timeout.Duration <= 0 {
		return fmt.Errorf("%s.timeout: %s is not a positive duration", field, ch.Timeout.Duration)
	}
	if ch.Retries != nil && (*ch.Retries < 0 || *ch.Retries > 10) {
		return fmt.Errorf("%s.retries: %d is not within 0..10", field, *ch.Retries)
	}
	if err := ch.RateLimit.validate(field + ".rateLimit"); err != nil {
		return err
	}
	return ch.GlobalRateLimit.validate(field + ".globalRateLimit")
}

func (r *RateLimit) validate(field string) error {
	if r == nil {
		return nil
	}
	if r.Burst < 1 {
		return fmt.Errorf("%s.burst: %d, must be at least 1", field, r.Burst)
	}
	if r.Every.Duration <= 0 {
		return fmt.Errorf("%s.every: %s is not a positive duration", field, r.Every.Duration)
	}
	return nil
}

func validKinds(field string, kinds []Kind) error {
	for i, k := range kinds {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("%s[%d]: %q is not one of %s", field, i, k, kindList())
		}
	}
	return nil
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
