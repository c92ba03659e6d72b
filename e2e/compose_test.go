package e2e

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/config"
)

// No Docker engine runs where the tests do, so the compose file is checked
// with the loader Docker Compose itself uses (schema validation included).
func TestComposeFile(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yml")},
		cli.WithName("backtestd"), cli.WithWorkingDirectory(".."))
	require.NoError(t, err)
	project, err := opts.LoadProject(t.Context())
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"postgres", "migrate", "server", "worker"}, project.ServiceNames())
	service := func(name string) types.ServiceConfig {
		s, err := project.GetService(name)
		require.NoError(t, err)
		return s
	}

	pg := service("postgres")
	require.NotNil(t, pg.HealthCheck)
	require.Contains(t, strings.Join(pg.HealthCheck.Test, " "), "pg_isready")
	require.Len(t, pg.Volumes, 1)
	require.Equal(t, "volume", pg.Volumes[0].Type, "data lives in a named volume")
	require.Contains(t, project.Volumes, pg.Volumes[0].Source)

	migrate := service("migrate")
	require.Equal(t, types.ShellCommand{"migrate", "up"}, migrate.Command)
	require.Equal(t, types.ServiceConditionHealthy, migrate.DependsOn["postgres"].Condition)
	require.Equal(t, "no", migrate.Restart)

	server := service("server")
	require.Equal(t, types.ServiceConditionCompletedSuccessfully, server.DependsOn["migrate"].Condition)
	require.Len(t, server.Ports, 1)
	require.Equal(t, uint32(8080), server.Ports[0].Target)
	require.NotNil(t, server.HealthCheck)
	require.Equal(t, types.HealthCheckTest{"CMD", "/usr/local/bin/server", "healthcheck"}, server.HealthCheck.Test)

	worker := service("worker")
	require.Equal(t, types.ServiceConditionCompletedSuccessfully, worker.DependsOn["migrate"].Condition)
	require.Equal(t, types.ShellCommand{"/usr/local/bin/worker"}, worker.Entrypoint)
	require.Empty(t, worker.Ports, "scalable: no fixed host port")
	require.Empty(t, worker.ContainerName, "scalable: no fixed container name")

	for _, s := range []types.ServiceConfig{migrate, server, worker} {
		require.NotNil(t, s.Build, "%s is built from the Dockerfile", s.Name)
		require.Equal(t, "Dockerfile", s.Build.Dockerfile)
		require.Equal(t, server.Image, s.Image, "one image for all three")
		require.False(t, s.Tty, "%s: a TTY would mangle the JSON lines", s.Name)
		require.False(t, s.StdinOpen, s.Name)
		require.Contains(t, s.Environment, config.EnvDatabaseURL)
		for name := range s.Environment {
			require.Contains(t, config.Names(), name, "%s sets %s, which no binary reads", s.Name, name)
		}
	}
}

// The Dockerfile's build: static binaries (the runtime image has no libc),
// built without the builder's paths, run by a non-root user.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	require.NoError(t, err)
	df := string(dockerfile)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "USER nonroot", "./cmd/server ./cmd/worker", "/usr/local/bin/"} {
		require.Contains(t, df, want)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+string(os.PathSeparator),
		"../cmd/server", "../cmd/worker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, name := range []string{"server", "worker"} {
		f, err := elf.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		interp := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		require.NoError(t, f.Close())
		require.False(t, interp, "%s must be static: the runtime image has no dynamic loader", name)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		wd, err := os.Getwd()
		require.NoError(t, err)
		require.NotContains(t, string(data), filepath.Dir(wd), "-trimpath keeps build paths out of %s", name)
	}
}
