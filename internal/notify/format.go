package notify

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxMessage bounds the condition message carried in a notification: Slack cuts a section
// at 3000 characters and a chat message is no place for a whole query.
const maxMessage = 1000

// Title is the one-line summary of an event.
func (e Event) Title() string {
	c := e.Namespace + "/" + e.Name
	switch e.Kind {
	case Started:
		return fmt.Sprintf("Canary %s: rollout of revision %s started", c, e.Revision)
	case Step:
		return fmt.Sprintf("Canary %s: canary weight %d%%", c, e.Weight)
	case Paused:
		return fmt.Sprintf("Canary %s: rollout paused (%s)", c, e.Phase)
	case Promoted:
		return fmt.Sprintf("Canary %s: revision %s promoted", c, e.Revision)
	case RolledBack:
		return fmt.Sprintf("Canary %s: rolling back revision %s after %d failed checks", c, e.Revision, e.FailedChecks)
	case Failed:
		return fmt.Sprintf("Canary %s: rollout of revision %s failed", c, e.Revision)
	default:
		return fmt.Sprintf("Canary %s: %s", c, e.Kind)
	}
}

// tone is how an event reads at a glance: 0 news, 1 good, 2 waiting, 3 bad.
type tone int

const (
	toneNews tone = iota
	toneGood
	toneWaiting
	toneBad
)

func (e Event) tone() tone {
	switch e.Kind {
	case RolledBack, Failed:
		return toneBad
	case Promoted:
		return toneGood
	case Paused:
		return toneWaiting
	default:
		return toneNews
	}
}

// slackEmoji and teamsColor show a tone in each format.
var (
	slackEmoji = [...]string{":large_blue_circle:", ":large_green_circle:", ":double_vertical_bar:", ":red_circle:"}
	teamsColor = [...]string{"Accent", "Good", "Warning", "Attention"}
)

func (e Event) message() string {
	m := e.Message
	if len(m) > maxMessage {
		m = strings.ToValidUTF8(m[:maxMessage], "") + "…"
	}
	return m
}

// Body renders the event in a channel type's format.
func Body(t ChannelType, e Event) ([]byte, error) {
	switch t {
	case Slack:
		return json.Marshal(slackBody(e))
	case Teams:
		return json.Marshal(teamsBody(e))
	case Webhook:
		return json.Marshal(e)
	default:
		return nil, fmt.Errorf("unknown channel type %q", t)
	}
}

// slackBody is an incoming-webhook message: text (shown in notifications and by clients
// without blocks) and Block Kit blocks.
func slackBody(e Event) map[string]any {
	emoji := slackEmoji[e.tone()]
	title := e.Title()
	fields := []map[string]any{
		{"type": "mrkdwn", "text": "*Phase*\n" + string(e.Phase)},
		{"type": "mrkdwn", "text": fmt.Sprintf("*Weight*\n%d%%", e.Weight)},
		{"type": "mrkdwn", "text": "*Revision*\n" + orDash(e.Revision)},
		{"type": "mrkdwn", "text": fmt.Sprintf("*Failed checks*\n%d", e.FailedChecks)},
	}
	blocks := []map[string]any{
		{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": emoji + " *" + slackEscape(title) + "*"}},
		{"type": "section", "fields": fields},
	}
	if m := e.message(); m != "" {
		blocks = append(blocks, map[string]any{"type": "context", "elements": []map[string]any{{"type": "mrkdwn", "text": slackEscape(m)}}})
	}
	return map[string]any{"text": title, "blocks": blocks}
}

// slackEscape escapes the three characters Slack's mrkdwn treats as markup.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// teamsBody is a message for a Teams Workflows "post to a channel when a webhook request is
// received" flow: an Adaptive Card in a message envelope. (Workflows accept Adaptive Cards
// only; the Office 365 connectors' MessageCard is retired.)
func teamsBody(e Event) map[string]any {
	color := teamsColor[e.tone()]
	body := []map[string]any{
		{"type": "TextBlock", "text": e.Title(), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
		{"type": "FactSet", "facts": []map[string]string{
			{"title": "Canary", "value": e.Namespace + "/" + e.Name},
			{"title": "Phase", "value": string(e.Phase)},
			{"title": "Weight", "value": fmt.Sprintf("%d%%", e.Weight)},
			{"title": "Revision", "value": orDash(e.Revision)},
			{"title": "Failed checks", "value": fmt.Sprint(e.FailedChecks)},
		}},
	}
	if m := e.message(); m != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": m, "wrap": true, "isSubtle": true})
	}
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard",
				"version": "1.4",
				"body":    body,
			},
		}},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
