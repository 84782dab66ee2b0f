/*
Copyright 2026 The canopy Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command manager runs canopy's controllers.
package main

import (
	"flag"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"canopy.dev/canopy/internal/manager"
)

func main() {
	opts := manager.Options{}
	opts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	ctx := ctrl.SetupSignalHandler()
	limit, err := manager.ApplyMemoryLimit(ctx, opts.MemoryLimitRatio, slog.New(logr.ToSlogHandler(ctrl.Log.WithName("memlimit"))))
	if err != nil {
		ctrl.Log.Error(err, "Invalid flag")
		os.Exit(1)
	}
	if limit > 0 {
		ctrl.Log.Info("Go memory limit set from the container's", "bytes", limit, "ratio", opts.MemoryLimitRatio)
	}

	if err := manager.Run(ctx, ctrl.GetConfigOrDie(), opts); err != nil {
		ctrl.Log.Error(err, "Manager exited with an error")
		os.Exit(1)
	}
}
