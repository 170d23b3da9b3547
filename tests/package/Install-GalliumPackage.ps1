<#
.SYNOPSIS
    Installs the module's .nupkg the way a user does (Install-PSResource from a repository) into a clean home of its own,
    and says how to start a pwsh that sees only that installation.
.DESCRIPTION
    A new HOME below -WorkRoot gives the child pwsh an empty PSResourceGet repository store (~/.local/share/PSResourceGet)
    and an empty CurrentUser module path (~/.local/share/powershell/Modules), so nothing of this machine's own settings
    or modules is used or changed. The folder holding the .nupkg is registered there as a local repository and the module
    is installed from it with Install-PSResource. Returns Home, ModuleBase (where the module landed) and Pwsh (the command
    line that starts this same pwsh: Invoke it with the environment from Get-CleanEnvironment).
#>
[CmdletBinding()]
param(
    # The folder with Gallium.PciPassthrough.<version>.nupkg (build.ps1 -Task Package writes out/package).
    [Parameter(Mandatory)] [string] $PackageDirectory,
    # An empty folder to hold the clean home.
    [Parameter(Mandatory)] [string] $WorkRoot
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

. (Join-Path $PSScriptRoot 'CleanSession.ps1')

$home_ = Join-Path $WorkRoot 'home'
New-Item -ItemType Directory -Force -Path $home_ | Out-Null
$repo = (Resolve-Path $PackageDirectory).Path
$install = @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name GalliumLocal -Uri '$repo' -Trusted
Install-PSResource -Name Gallium.PciPassthrough -Repository GalliumLocal -Scope CurrentUser -PassThru |
    ForEach-Object { Join-Path `$_.InstalledLocation "`$(`$_.Name)/`$(`$_.Version)" }
"@
$output = Invoke-CleanPwsh -HomeDirectory $home_ -Command $install -WorkingDirectory $WorkRoot
if ($LASTEXITCODE -ne 0) { throw "Install-PSResource failed (exit $LASTEXITCODE): $($output -join [Environment]::NewLine)" }
[pscustomobject]@{ Home = $home_; ModuleBase = @($output)[-1]; Repository = $repo }
