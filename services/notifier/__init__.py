"""The notifier: tells people and systems what Medic saw and did.

Flow: `RemediationResult` on MEDIC_RESULTS (durable consumer "notifier") -> `routing` (which
channels) -> `render` (templates + Block Kit, worded by `wording`) -> `delivery` (dedup, rate,
retry, `folding` of failed attempts into the outcome that follows, digest, dead-letter) ->
`channels` (slack, webhook, console, entry-point plugins). Delivery records go to
MEDIC_NOTIFICATIONS, per-channel dead letters to MEDIC_DEADLETTER.

Configuration (`notifier:` section of the file named by MEDIC_CONFIG, or MEDIC_NOTIFIER_CHANNELS
as a JSON list):

    notifier:
      digest_threshold: 10        # more than 10 results for a channel ...
      digest_window: 30           # ... within 30 s -> one digest message
      retry_cap: 300              # longest wait between retries (s)
      fold_window: 60             # a failed attempt waits this long to be folded (s)
      template_dir: /etc/medic/templates   # title.j2 / text.j2 / digest.j2 overrides
      channels:
        - name: platform          # what rules put in `notify:`
          type: slack             # Web API with a bot token: one thread per object
          filters: {outcomes: [failed, escalated, succeeded], clusters: ["prod-*"]}
          options: {token_file: /var/run/secrets/slack/token, channel: "#platform"}
        - name: team-hook
          type: slack             # incoming webhook: no threads
          default: false          # only when a rule names it
          options: {webhook_url_file: /var/run/secrets/slack/webhook}
        - name: events
          type: webhook           # JSON POST, Standard Webhooks signature
          filters: {severities: [critical], include_skipped: false}
          templates: {title: "{{ outcome }}: {{ object_display }}"}
          options:
            url_file: /var/run/secrets/hook/url
            secret_file: /var/run/secrets/hook/whsec
            headers: {X-Team: platform}
            timeout: 5
        - name: console
          type: console
"""
