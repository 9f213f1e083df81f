package main

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }
