package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
)

// archivedPerSweep bounds the archived tasks one sweep reads per queue.
// Handled tasks leave the archive (sweepArchived), so this bounds only the
// backlog of tasks not yet handled, never the junk already seen.
const archivedPerSweep = 1000

// Headers the sweeper adds to a task it moves to the settled queue, for
// operators reading it in /monitoring/ (Asynq forgets the task's last
// error when it moves).
const (
	HeaderSettled   = "stockgate-settled"    // what the sweeper did with the task
	HeaderLastError = "stockgate-last-error" // the task's last error in its own queue
)

func (c *SweeperConfig) validateArchive() error {
	if c.Archive != nil && c.ArchiveClient == nil {
		return errors.New("sweeper: Archive needs ArchiveClient to move the archived tasks it has handled")
	}
	if len(c.Queues) == 0 {
		c.Queues = []string{orders.Queue}
	}
	return nil
}

// sweepArchived handles the archived tasks of every order queue
// (docs/design.md, "The sweeper and archived tasks"): an order archived
// before any attempt decided it is recorded failed (its holds then follow
// the row), an invalid order with a usable id that its worker could not
// record is recorded rejected, and a task with no usable order id is junk
// that was archived on purpose. Each handled task then moves to the queue's
// settled archive, where operators still see it. Asynq keeps up to 10,000
// archived tasks for 90 days and lists them oldest first: a sweep that left
// them in place would read the same first ones every time, and an order
// archived behind 1,000 junk tasks would never get its row.
func (s *Sweeper) sweepArchived(ctx context.Context, res *SweepResult) error {
	var errs []error
	for _, q := range s.cfg.Queues {
		if err := s.sweepArchivedQueue(ctx, q, res); err != nil {
			errs = append(errs, fmt.Errorf("archived tasks of %s: %w", q, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Sweeper) sweepArchivedQueue(ctx context.Context, queue string, res *SweepResult) error {
	// One page: what this sweep handles leaves the archive, so paging on
	// would skip tasks; what it cannot handle now stays for the next sweep.
	tasks, err := s.cfg.Archive.ListArchivedTasks(queue, asynq.PageSize(archivedPerSweep))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	res.ArchivedRead += len(tasks)
	var errs []error
	for _, ti := range tasks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		note, err := s.decideArchived(ctx, ti, res)
		if err == nil {
			err = s.moveSettled(queue, ti, note)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", ti.ID, err))
			continue
		}
		res.Settled++
		s.log.DebugContext(ctx, "archived task settled", "queue", queue, "task_id", ti.ID, "settled", note)
	}
	return errors.Join(errs...)
}

// decideArchived makes sure the order of an archived task has its row, and
// says what became of it.
func (s *Sweeper) decideArchived(ctx context.Context, ti *asynq.TaskInfo, res *SweepResult) (string, error) {
	switch ti.Type {
	case orders.TaskType:
	case orders.ConfirmTaskType, orders.CancelTaskType:
		return s.decideArchivedAction(ctx, ti)
	default:
		// Another type in an order queue had no handler here and was
		// archived for it: junk like a payload without an order id.
		return "not an order task", nil
	}
	o, err := orders.Decode(ti.Payload)
	var inv *orders.InvalidError
	switch {
	case errors.As(err, &inv) && inv.OrderID == "":
		// Invalid input, archived with its reason and never accepted.
		return "no usable order id: " + inv.Error(), nil
	case errors.As(err, &inv):
		// The handler records such an order rejected; it was archived
		// because it could not (Postgres stayed down past the retries).
		// Nothing was reserved for this payload, so nothing is settled.
		row, inserted, err := s.flow.Refuse(ctx, orders.Record{
			OrderID: inv.OrderID, Status: orders.StatusRejected, Reason: inv.Error()})
		if err != nil {
			return "", err
		}
		if inserted {
			res.Archived++
		}
		return "row " + string(row.Status) + ": " + row.Reason, nil
	case err != nil:
		return "", err
	}
	if row, err := s.store.Get(ctx, o.OrderID); err == nil {
		return "row " + string(row.Status) + ": " + row.Reason, nil
	} else if !errors.Is(err, orders.ErrNotFound) {
		return "", err
	}
	// A handler still running on a lost lease may confirm in between; the
	// row decides and its holds then follow it.
	row, inserted, _, err := s.flow.Conclude(ctx, orders.Record{
		OrderID: o.OrderID, CustomerID: o.CustomerID, Status: orders.StatusFailed, Reason: orders.ReasonTaskArchived,
		Detail: truncate(ti.LastErr, 200), PlacedAt: o.PlacedAt, PayloadHash: o.Hash(), Lines: o.Lines,
	}, o.SKUs())
	if err != nil {
		return "", err
	}
	if inserted {
		res.Archived++
	}
	return "row " + string(row.Status) + ": " + row.Reason, nil
}

// decideArchivedAction notes what stands for a confirm or cancel whose
// retries ran out (Postgres or Redis down throughout): nothing is decided for
// it. The order already has its row, so no order is lost (I2): a held
// checkout the confirm never reached expires at its deadline, and a sale the
// cancel never reached stays sold. Moving the task out of the archive frees
// its TaskID, so the storefront's retry of the same Confirm or Cancel is
// enqueued anew instead of waiting on this one.
func (s *Sweeper) decideArchivedAction(ctx context.Context, ti *asynq.TaskInfo) (string, error) {
	a, err := orders.DecodeAction(ti.Payload)
	if err != nil {
		return ti.Type + " invalid: " + err.Error(), nil
	}
	row, err := s.store.Get(ctx, a.OrderID)
	switch {
	case errors.Is(err, orders.ErrNotFound):
		return ti.Type + " not applied: no such order", nil
	case err != nil:
		return "", err
	}
	return ti.Type + " not applied (retries ran out): row " + string(row.Status), nil
}

// moveSettled moves a handled archived task from queue's archive to the
// settled queue's: a copy is enqueued there under the same id (that queue
// has no worker), archived, and the original deleted. Each step is safe to
// run again, so a sweep cut short, or two sweepers on one task, finish the
// move on the next try.
func (s *Sweeper) moveSettled(queue string, ti *asynq.TaskInfo, note string) error {
	settled := orders.SettledQueue(queue)
	headers := maps.Clone(ti.Headers)
	if headers == nil {
		headers = map[string]string{}
	}
	headers[HeaderSettled] = truncate(note, 200)
	headers[HeaderLastError] = truncate(ti.LastErr, 200)
	task := asynq.NewTaskWithHeaders(ti.Type, ti.Payload, headers,
		asynq.Queue(settled), asynq.TaskID(ti.ID), asynq.MaxRetry(0))
	// A conflict is a copy already there: this move cut short, another
	// sweeper's, or an earlier task under the same id (a resubmitted order
	// archived again), which then stands for both.
	if _, err := s.cfg.ArchiveClient.Enqueue(task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("copy to %s: %w", settled, err)
	}
	if err := s.archiveIn(settled, ti.ID); err != nil {
		return err
	}
	if err := s.cfg.Archive.DeleteTask(queue, ti.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("delete from %s: %w", queue, err)
	}
	return nil
}

// archiveIn archives the task id of queue unless it is archived already.
func (s *Sweeper) archiveIn(queue, id string) error {
	archived := func() (bool, error) {
		info, err := s.cfg.Archive.GetTaskInfo(queue, id)
		if err != nil {
			return false, fmt.Errorf("read %s copy: %w", queue, err)
		}
		return info.State == asynq.TaskStateArchived, nil
	}
	if ok, err := archived(); ok || err != nil {
		return err
	}
	aerr := s.cfg.Archive.ArchiveTask(queue, id)
	if aerr == nil {
		return nil
	}
	// Another sweeper may have archived it in between.
	if ok, err := archived(); ok {
		return nil
	} else if err != nil {
		return errors.Join(aerr, err)
	}
	return fmt.Errorf("archive %s copy: %w", queue, aerr)
}
