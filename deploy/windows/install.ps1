<#
.SYNOPSIS
  Registers the emotion bridge in the Task Scheduler for the current user: starts at logon, restarts on failure.
.EXAMPLE
  powershell -ExecutionPolicy Bypass -File deploy\windows\install.ps1 -InstallDir C:\emotion-bridge
  powershell -ExecutionPolicy Bypass -File deploy\windows\install.ps1 -Uninstall
#>
param(
    [string]$InstallDir = "C:\emotion-bridge",
    [string]$Config = "",
    [string]$TaskName = "emotion-bridge",
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"

if ($Uninstall) {
    Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
    Write-Host "removed scheduled task '$TaskName'"
    exit 0
}

$exe = Join-Path $InstallDir ".venv\Scripts\emotion-bridge.exe"
if (-not (Test-Path $exe)) { throw "not found: $exe (create the venv and pip install the bridge there first; see README.md)" }
if (-not $Config) { $Config = Join-Path $InstallDir "config.yaml" }
if (-not (Test-Path $Config)) { throw "not found: $Config (copy configs\default.yaml there and edit it)" }

# check the configuration now, while someone is watching, rather than in a restart loop later
& $exe config --config $Config | Out-Null
if ($LASTEXITCODE -ne 0) { throw "the configuration $Config is not valid (see the message above)" }

$xml = Get-Content -Raw -Encoding UTF8 -Path (Join-Path $PSScriptRoot "emotion-bridge-task.xml")
$xml = $xml.Replace("C:\emotion-bridge\config.yaml", $Config).Replace("C:\emotion-bridge", $InstallDir)
$user = "$env:USERDOMAIN\$env:USERNAME"
Register-ScheduledTask -TaskName $TaskName -Xml $xml -User $user -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName
Write-Host "scheduled task '$TaskName' registered for $user (at logon, restart on failure) and started."
Write-Host "Status: Get-ScheduledTask $TaskName | Get-ScheduledTaskInfo    Stop: Stop-ScheduledTask $TaskName"
