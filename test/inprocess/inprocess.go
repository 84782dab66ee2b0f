// Package inprocess runs canopy's manager in the test process against a testenv
// environment, with the admission webhooks served where the environment installed them.
// (test/testenv cannot do it: the controllers' own tests import testenv, and the manager
// imports the controllers.)
package inprocess

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
	"canopy.dev/canopy/internal/manager"
	"canopy.dev/canopy/test/testenv"
)

// Operator is a manager running in this process until the test ends.
type Operator struct {
	mu     sync.Mutex
	done   chan error
	exited bool
	err    error
}

// Start runs the manager with opts until the test ends, and fails the test then if it
// exited with an error. The metrics and probe servers are off. When env serves webhooks
// (testenv.Options.Webhooks), the manager serves them, as deployed, and Start returns once
// the apiserver reaches them.
func Start(t *testing.T, env *testenv.Env, opts manager.Options) *Operator {
	t.Helper()
	testenv.SkipIfShort(t)
	opts.MetricsAddr, opts.ProbeAddr = "0", "0"
	if opts.MaxConcurrent == 0 {
		opts.MaxConcurrent = 2
	}
	opts.QPS, opts.Burst = 200, 400
	if w := env.Webhook; w != nil {
		opts.EnableWebhooks = true
		opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = w.Host, w.Port, w.CertDir
	}
	ctx, cancel := context.WithCancel(context.Background())
	op := &Operator{done: make(chan error, 1)}
	opts.InProcess = true
	go func() { op.done <- manager.Run(ctx, env.Config, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := op.wait(); err != nil {
			t.Errorf("the operator exited with an error: %v", err)
		}
	})
	if env.Webhook == nil {
		return op
	}
	probe := &meshv1.MetricTemplate{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}, Spec: meshv1.MetricTemplateSpec{Query: "up"}}
	testenv.Eventually(t, time.Minute, func() error {
		if err := op.Exited(); err != nil {
			return err
		}
		return env.Client.Create(t.Context(), probe.DeepCopy(), client.DryRunAll)
	})
	return op
}

// Exited returns an error if the operator is no longer running, with its exit error.
func (o *Operator) Exited() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.exited {
		select {
		case o.err = <-o.done:
			o.exited = true
		default:
			return nil
		}
	}
	return fmt.Errorf("the operator exited (error: %v)", o.err)
}

func (o *Operator) wait() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.exited {
		o.err, o.exited = <-o.done, true
	}
	return o.err
}
