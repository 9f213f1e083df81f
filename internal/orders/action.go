package orders

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/telemetry"
)

// The checkout task contract (README "Contracts", docs/design.md
// "Checkout"): a held order is confirmed or cancelled by a task of its own,
// on the orders' queue, whose payload is an Action.
const (
	// ConfirmTaskType moves a held order to confirmed: its holds are sold.
	ConfirmTaskType = "order:confirm"
	// CancelTaskType moves a held order to cancelled (its holds go back),
	// or a confirmed one (its sold units go back): a refund or a return.
	CancelTaskType = "order:cancel"
	// MaxActionPayloadBytes bounds an Action's payload, checked first.
	MaxActionPayloadBytes = 4 << 10
	// MaxActionReason bounds an Action's reason, in characters.
	MaxActionReason = 200
)

// Action is the payload of an order:confirm or order:cancel task.
type Action struct {
	OrderID string `json:"order_id"`
	// Reason is the storefront's own words, optional ("payment_failed",
	// "customer returned it"): at most MaxActionReason characters, no
	// control characters. The row keeps it as its detail.
	Reason string `json:"reason,omitempty"`
}

// Validate checks an Action: a usable order_id and a bounded one-line
// reason. The error is an *InvalidError.
func (a Action) Validate() error {
	if r := checkID("order_id", a.OrderID); r != "" {
		return invalid("", r)
	}
	if r := checkReason(a.Reason); r != "" {
		return invalid(a.OrderID, r)
	}
	return nil
}

func checkReason(s string) string {
	if n := utf8.RuneCountInString(s); n > MaxActionReason {
		return fmt.Sprintf("reason is %d characters, max %d", n, MaxActionReason)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "reason must be one line of text, got " + quote(s)
		}
	}
	return ""
}

// ActionTaskID is the Asynq TaskID of an order's confirm or cancel task:
// "confirm@ID", "cancel@ID". One per operation and order, so that a
// storefront asking twice enqueues once; '@' is outside the order id
// charset, so no order:place TaskID (the order id itself) can take it.
func ActionTaskID(taskType, orderID string) string {
	switch taskType {
	case ConfirmTaskType:
		return "confirm@" + orderID
	case CancelTaskType:
		return "cancel@" + orderID
	}
	return taskType + "@" + orderID
}

// NewActionTask builds the order:confirm or order:cancel task for a: the
// payload, its TaskID, the orders' queue, retention and retries, with ctx's
// trace context in its headers. The Action is validated first.
func NewActionTask(ctx context.Context, taskType string, a Action, opts TaskOptions) (*asynq.Task, error) {
	if taskType != ConfirmTaskType && taskType != CancelTaskType {
		return nil, fmt.Errorf("new action task: unknown task type %q", taskType)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", taskType, a.OrderID, err)
	}
	headers := map[string]string{}
	telemetry.InjectHeaders(ctx, headers)
	return asynq.NewTaskWithHeaders(taskType, payload, headers,
		asynq.TaskID(ActionTaskID(taskType, a.OrderID)), asynq.Queue(cmp.Or(opts.Queue, Queue)),
		asynq.Retention(cmp.Or(opts.Retention, DefaultRetention)),
		asynq.MaxRetry(cmp.Or(opts.MaxRetry, DefaultMaxRetry))), nil
}

// DecodeAction strictly decodes and validates an order:confirm or
// order:cancel payload, as Decode does an order's: at most
// MaxActionPayloadBytes, one UTF-8 JSON object, no unknown or duplicate
// keys, no trailing data, order_id a usable id, reason (optional) a string
// of at most MaxActionReason characters without control characters. The
// error is an *InvalidError with a one-line reason.
func DecodeAction(b []byte) (Action, error) {
	switch {
	case len(b) > MaxActionPayloadBytes:
		return Action{}, invalid("", fmt.Sprintf("payload is %d bytes, max %d", len(b), MaxActionPayloadBytes))
	case bytes.HasPrefix(b, []byte("\uFEFF")):
		return Action{}, invalid("", "payload starts with a byte order mark")
	case len(bytes.TrimLeft(b, " \t\r\n")) == 0:
		return Action{}, invalid("", "empty payload")
	}
	var a Action
	if err := json.Unmarshal(b, &a, decodeActionOptions); err != nil {
		return Action{}, refused(b, err)
	}
	if err := a.Validate(); err != nil {
		return Action{}, err
	}
	return a, nil
}

// decodeActionOptions are decodeOptions for an Action, whose reason may be
// an empty string (the same as none).
var decodeActionOptions = json.JoinOptions(
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
	json.MatchCaseInsensitiveNames(false),
	json.RejectUnknownMembers(true),
	json.WithUnmarshalers(json.JoinUnmarshalers(
		json.UnmarshalFromFunc(kindOnly[*Action]('{', "a JSON object")),
		json.UnmarshalFromFunc(unmarshalActionString),
	)),
)

// unmarshalActionString reads order_id and reason: strings, never null.
func unmarshalActionString(dec *jsontext.Decoder, s *string) error {
	if dec.PeekKind() != '"' {
		return mismatch(dec, "must be a string")
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	*s = tok.String()
	return nil
}
