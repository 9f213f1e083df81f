package devsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedisServer says redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server is not on PATH (make test and make run install it: apt-get install redis-server)")

// RedisServer is the path of the redis-server on PATH.
func RedisServer() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNoRedisServer
	}
	return bin, nil
}

// RedisOptions configures a redis-server.
type RedisOptions struct {
	// Dir is the server's working directory, where it keeps its RDB and
	// AOF files. Required.
	Dir string
	// Port is the port to listen on when it is free; 0 or taken, another
	// free one.
	Port int
	// Args are more config arguments, e.g. "--appendonly", "yes"; later
	// ones win, so they may override the defaults.
	Args []string
	// Detach runs the server in a session of its own with its output
	// appended to Dir/redis.log, so that it outlives this process: make
	// run's server. Otherwise it is a child process that Stop kills.
	Detach bool
}

func (o RedisOptions) validate() error {
	if o.Dir == "" {
		return errors.New("redis: Dir is required")
	}
	return nil
}

// Redis is a redis-server process this package started, listening on
// 127.0.0.1 only.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string

	argv   []string
	detach bool
	cmd    *exec.Cmd
	exited chan struct{}
	out    *tailBuffer
}

// redisStartTimeout bounds the wait for a started server to answer PING,
// AOF loading included.
const redisStartTimeout = 10 * time.Second

// StartRedis starts a redis-server with maxmemory-policy noeviction (the
// worker's requirement) and waits until it answers PING.
func StartRedis(opts RedisOptions) (*Redis, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	bin, err := RedisServer()
	if err != nil {
		return nil, err
	}
	port, err := FreePort(opts.Port)
	if err != nil {
		return nil, err
	}
	argv := append([]string{bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", opts.Dir,
		"--maxmemory-policy", "noeviction",
	}, opts.Args...)
	r := &Redis{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: opts.Dir,
		argv: argv, detach: opts.Detach,
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// URL is the redis:// URL of database db on this server.
func (r *Redis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

// Client returns a new go-redis client on database db.
func (r *Redis) Client(db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, DB: db})
}

// Pid is the server's process id, 0 when it is not running.
func (r *Redis) Pid() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Start (re)starts the server with the arguments it was created with and
// waits until it answers PING.
func (r *Redis) Start() error {
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	logFile := ""
	if r.detach {
		logFile = filepath.Join(r.Dir, "redis.log")
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close() // the server has its own copy
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		r.out = &tailBuffer{}
		cmd.Stdout, cmd.Stderr = r.out, r.out
		// A killed server's fork (an AOF rewrite) may hold the pipe a while.
		cmd.WaitDelay = time.Second
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(r.exited)

	output := func() string {
		if logFile != "" {
			return "; see " + logFile + ":\n" + tailFile(logFile, 2000)
		}
		return ":\n" + r.out.String()
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(redisStartTimeout)
	for {
		select {
		case <-r.exited:
			r.cmd = nil
			return fmt.Errorf("redis-server on %s exited at start (%v)%s", r.Addr, cmd.ProcessState, output())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// Under --requirepass the server answers PING with NOAUTH; that is
		// up. Other error replies (LOADING) are not.
		var reply redis.Error
		if err == nil || (errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOAUTH")) {
			return nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("redis-server on %s did not answer within %v: %w%s", r.Addr, redisStartTimeout, err, output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: a crash, not a shutdown) and waits for
// it. A detached server is left to whoever holds its pid.
func (r *Redis) Stop() {
	if r.cmd == nil || r.detach {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}
